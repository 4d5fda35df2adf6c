/**
 * The one error hierarchy of zsetup. Every error the CLI can end with is one of these,
 * and each carries the process exit code documented in the README and `--help`.
 */

/** Exit codes, as documented. */
export const EXIT = {
  ok: 0,
  stepFailed: 1,
  usage: 2,
  lockTimeout: 3,
  verifyMismatch: 4,
  refused: 5,
  connectionLost: 6,
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Base class: a message meant for an operator, an exit code, an optional hint and the SQLSTATE behind it. */
export class ZsetupError extends Error {
  readonly exitCode: ExitCode = EXIT.stepFailed;
  constructor(
    message: string,
    readonly hint?: string,
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad flags, environment or configuration. Exit 2. */
export class ConfigError extends ZsetupError {
  override readonly exitCode = EXIT.usage;
}

/** The database could not be reached or refused the login. Exit 2. */
export class ConnectionError extends ZsetupError {
  override readonly exitCode = EXIT.usage;
}

/** `--lock-wait` ran out while another runner held the lock. Exit 3. */
export class LockTimeoutError extends ZsetupError {
  override readonly exitCode = EXIT.lockTimeout;
}

/** A step failed; details are in the step result. Exit 1. */
export class StepFailedError extends ZsetupError {
  override readonly exitCode = EXIT.stepFailed;
}

/** `verify` found a difference between the source and the copy. Exit 4. */
export class VerifyMismatchError extends ZsetupError {
  override readonly exitCode = EXIT.verifyMismatch;
}

/**
 * The database is in a state zsetup will not touch: a half-done state it cannot resume, rows that do
 * not fit the mapping, missing privileges. Nothing was written. Exit 5.
 */
export class RefusedError extends ZsetupError {
  override readonly exitCode = EXIT.refused;
}

/**
 * The connection to PostgreSQL broke while zsetup worked (server stopped or restarted, network cut,
 * session terminated). Every unit of work commits with its checkpoint, so a rerun resumes. Exit 6.
 */
export class ConnectionLostError extends ZsetupError {
  override readonly exitCode = EXIT.connectionLost;
}

/** The run was stopped by SIGINT/SIGTERM after recording its state. Exit 130. */
export class InterruptedError extends ZsetupError {
  override readonly exitCode = EXIT.interrupted;
}

/**
 * SQLSTATEs and client errors that mean the session is gone, not that a statement failed: the server
 * shut down (57P01 admin, 57P02 crash, 57P03 cannot connect now), a connection exception (class 08),
 * or node-postgres / the socket noticing the connection ended.
 */
const LOST_SQLSTATES = /^(57P0[123]|08...)$/;
const LOST_SOCKET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
const LOST_MESSAGES = /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|terminating connection/i;

/** True when `err` says the connection to PostgreSQL is gone (see {@link ConnectionLostError}). */
export function isConnectionLost(err: unknown): boolean {
  if (err instanceof ConnectionLostError) return true;
  if (err instanceof ZsetupError || !(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (LOST_SQLSTATES.test(code) || LOST_SOCKET_CODES.has(code))) return true;
  return LOST_MESSAGES.test(err.message);
}

/**
 * The error of a step whose connection was lost: which step, in which phase, and that a rerun resumes.
 * `cause` is the error that showed it (its SQLSTATE is kept, e.g. 57P01 for a server shutdown).
 */
export function connectionLostDuring(stepId: string, phase: string | undefined, cause: unknown): ConnectionLostError {
  const sqlstate = isDatabaseError(cause) ? cause.code : cause instanceof ZsetupError ? cause.sqlstate : undefined;
  return new ConnectionLostError(
    `lost the connection to PostgreSQL during ${stepId}${phase ? `: ${phase}` : ''}; rerun to resume`,
    `the last committed checkpoint is kept; once the server is reachable again, rerun the same command (${cause instanceof Error ? cause.message : String(cause)})`,
    sqlstate,
  );
}

/** 42501 insufficient_privilege: the role may not read or write something zsetup touched. */
export const INSUFFICIENT_PRIVILEGE = '42501';

/** The hint shown with a 42501 that carries none of its own. */
export const PRIVILEGE_HINT =
  'the role lacks a privilege on what the message names: grant it (e.g. GRANT USAGE ON SCHEMA <schema>, GRANT SELECT ON <table>) as a superuser or the owner, or run zsetup as the role that owns the ZITADEL schemas';

/** True for errors coming from the PostgreSQL server (they carry a SQLSTATE). */
export function isDatabaseError(err: unknown): err is Error & DatabaseErrorFields {
  return err instanceof Error && typeof (err as unknown as { code?: unknown }).code === 'string' && /^[0-9A-Z]{5}$/.test((err as unknown as { code: string }).code);
}

interface DatabaseErrorFields {
  code: string;
  detail?: string;
  hint?: string;
  position?: string;
  where?: string;
  table?: string;
  constraint?: string;
}

/** What an operator needs to know about a failure, as plain data (stored in the steps table, printed, JSON). */
export interface ErrorReport {
  readonly message: string;
  readonly sqlstate?: string;
  readonly detail?: string;
  readonly hint?: string;
  readonly position?: string;
  readonly where?: string;
  readonly kind: string;
  /** Stable, machine-readable name of the kind of failure, e.g. `connection`, `refused` (see ERROR_CODES). */
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
}

/** The `code` of an {@link ErrorReport}: one per error class, plus `database` and `internal`. */
export type ErrorCode =
  | 'usage' | 'connection' | 'connection-lost' | 'lock-timeout' | 'step-failed' | 'verify-mismatch'
  | 'refused' | 'interrupted' | 'database' | 'internal';

const ERROR_CODES: Record<string, ErrorCode> = {
  ConfigError: 'usage',
  ConnectionError: 'connection',
  ConnectionLostError: 'connection-lost',
  LockTimeoutError: 'lock-timeout',
  StepFailedError: 'step-failed',
  VerifyMismatchError: 'verify-mismatch',
  RefusedError: 'refused',
  InterruptedError: 'interrupted',
};

/** Turns any thrown value into an {@link ErrorReport}. */
export function describeError(err: unknown): ErrorReport {
  if (err instanceof ZsetupError) {
    return { kind: err.name, code: ERROR_CODES[err.name] ?? 'step-failed', message: err.message, sqlstate: err.sqlstate, hint: err.hint, exitCode: err.exitCode };
  }
  if (isConnectionLost(err)) {
    const e = err as Error & { code?: string };
    return describeError(new ConnectionLostError(
      `lost the connection to PostgreSQL (${e.message}); rerun to resume`,
      undefined,
      isDatabaseError(err) ? e.code : undefined,
    ));
  }
  if (isDatabaseError(err)) {
    return {
      kind: 'DatabaseError',
      code: 'database',
      message: err.message,
      sqlstate: err.code,
      detail: err.detail,
      hint: err.hint ?? (err.code === INSUFFICIENT_PRIVILEGE ? PRIVILEGE_HINT : undefined),
      position: err.position,
      where: err.where,
      exitCode: EXIT.stepFailed,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { kind: err instanceof Error ? err.name : 'Error', code: 'internal', message, exitCode: EXIT.stepFailed };
}
