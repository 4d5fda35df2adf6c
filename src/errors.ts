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
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Base class: a message meant for an operator, an exit code and an optional hint. */
export class ZsetupError extends Error {
  readonly exitCode: ExitCode = EXIT.stepFailed;
  constructor(
    message: string,
    readonly hint?: string,
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

/** The run was stopped by SIGINT/SIGTERM after recording its state. Exit 130. */
export class InterruptedError extends ZsetupError {
  override readonly exitCode = EXIT.interrupted;
}

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
  readonly exitCode: ExitCode;
}

/** Turns any thrown value into an {@link ErrorReport}. */
export function describeError(err: unknown): ErrorReport {
  if (err instanceof ZsetupError) {
    return { kind: err.name, message: err.message, hint: err.hint, exitCode: err.exitCode };
  }
  if (isDatabaseError(err)) {
    return {
      kind: 'DatabaseError',
      message: err.message,
      sqlstate: err.code,
      detail: err.detail,
      hint: err.hint,
      position: err.position,
      where: err.where,
      exitCode: EXIT.stepFailed,
    };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { kind: err instanceof Error ? err.name : 'Error', message, exitCode: EXIT.stepFailed };
}
