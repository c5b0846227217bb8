import type { Role } from '../domain/types.ts';

/**
 * What each role may do. Every admin route names one permission; this table is the whole access
 * model (the README prints it).
 */
export type Permission = 'read' | 'write' | 'tokens';

export const ROLE_PERMISSIONS = {
  admin: ['read', 'write', 'tokens'],
  reader: ['read'],
} as const satisfies Record<Role, readonly Permission[]>;

export function roleAllows(role: Role, permission: Permission): boolean {
  return (ROLE_PERMISSIONS[role] as readonly Permission[]).includes(permission);
}
