// The room core lives in ./room/ as parts that each own their state (see docs/architecture.md); this
// module keeps the import path stable for the UI, the store and the tests.
export * from './room/room.js';
export { PAIRWISE_AAD } from './room/links.js';
export { PREKEY_AAD } from './room/senderkeys.js';
