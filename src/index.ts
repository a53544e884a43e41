// The library's public surface: the client and the protocol types.
export { HerdClient, HerdError } from './client';
export type { ClientErrorCode, ConnectOptions, RequestOptions } from './client';
export * from './protocol';
