"""ephemesh signaling server: authenticates peers and relays opaque signed blobs between room members.

Public API: :func:`create_app`, :func:`start_server`, :func:`run`, :class:`SignalingConfig`.
"""

from signaling.app import create_app, run, start_server
from signaling.config import Limits, SignalingConfig, TurnConfig

__all__ = ["Limits", "SignalingConfig", "TurnConfig", "create_app", "run", "start_server"]
