/**
 * Public error classes. Every error that leaves the machine through a public interface (the
 * library API, the CLI, a server's protocol) is an {@link ExocoreError} with a stable `code`
 * (`EXO_ERR_INVALID_ARG`) and, where one fits, the errno it stands for. Inside the machine calls
 * return `-errno` numbers instead (see src/abi/errno.ts); {@link fromErrno} crosses the line.
 */

import { EINVAL, EIO, errnoMessage, errnoName } from "./abi/errno.js";

export class ExocoreError extends Error {
  /** Stable machine-readable code, e.g. `EXO_ERR_INVALID_ARG`. */
  readonly code: string;
  /** The errno this error stands for (positive), or 0 when none fits. */
  readonly errno: number;

  constructor(code: string, message: string, errno = 0, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.errno = errno;
  }
}

/** A bad option or argument given to a public interface; the message says which and why. */
export class InvalidArgumentError extends ExocoreError {
  constructor(message: string) {
    super("EXO_ERR_INVALID_ARG", message, EINVAL);
  }
}

/** A broken invariant inside the machine: the worker that sees it stops (see {@link panic}). */
export class PanicError extends ExocoreError {
  constructor(message: string) {
    super("EXO_ERR_PANIC", `panic: ${message}`);
  }
}

/** A device or image could not be read or written, or holds something it must not (EIO). */
export class IoError extends ExocoreError {
  constructor(message: string, errno = EIO, options?: ErrorOptions) {
    super("EXO_ERR_IO", message, errno, options);
  }
}

/** A call inside the machine returned `-errno`; carried out to the public API. */
export class SyscallError extends ExocoreError {
  /** The call that failed, e.g. `open`. */
  readonly syscall: string;
  constructor(syscall: string, errno: number) {
    const n = Math.abs(errno);
    super(`EXO_ERR_${errnoName(n)}`, `${syscall}: ${errnoMessage(n)} (${errnoName(n)})`, n);
    this.syscall = syscall;
  }
}

/** Turn a `-errno` return into a {@link SyscallError}. */
export function fromErrno(syscall: string, ret: number): SyscallError {
  return new SyscallError(syscall, ret);
}

/** Stop this worker on a broken invariant: `panic("ring: tail passed head")`. Never caught. */
export function panic(message: string): never {
  throw new PanicError(message);
}

/** Option checks with precise messages (undici style): each throws InvalidArgumentError. */
export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `${name} must be an integer from ${min} to ${max}, got ${describe(value)}`,
    );
  }
  return value;
}

export function checkPowerOfTwo(name: string, value: unknown, min: number, max: number): number {
  const v = checkInteger(name, value, min, max);
  if ((v & (v - 1)) !== 0) {
    throw new InvalidArgumentError(`${name} must be a power of two, got ${v}`);
  }
  return v;
}

export function checkOneOf<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(
      `${name} must be one of ${allowed.join(", ")}, got ${describe(value)}`,
    );
  }
  return value as T;
}

function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || value == null)
    return String(value);
  return typeof value;
}
