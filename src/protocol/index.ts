/** The wire protocol (public as `protocol`): message types and builders, and their parsing. */
export * from './messages.ts'
export * from './parse.ts'
