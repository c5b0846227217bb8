import m0001 from './migrations/0001_init.sql';

/** Forward-only migrations, embedded in the build; `user_version` records how far a database is. */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  { version: 1, name: '0001_init', sql: m0001 },
];
