/**
 * errno: the error numbers of the machine (Linux's numbers and names).
 *
 * Inside the machine a call that fails returns `-errno` as a plain number (an exception does not
 * cross threads, and the fast path must not allocate); at the public API those numbers become
 * {@link ExocoreError}s with stable codes (see src/errors.ts).
 */

export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const E2BIG = 7;
export const EBADF = 9;
export const ECHILD = 10;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENODEV = 19;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const EINVAL = 22;
export const ENFILE = 23;
export const EMFILE = 24;
export const EFBIG = 27;
export const ENOSPC = 28;
export const ESPIPE = 29;
export const EROFS = 30;
export const EMLINK = 31;
export const EPIPE = 32;
export const ERANGE = 34;
export const EDEADLK = 35;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ENOTEMPTY = 39;
export const ELOOP = 40;
export const EOVERFLOW = 75;
export const EBADMSG = 74;
export const ENOTSOCK = 88;
export const EDESTADDRREQ = 89;
export const EMSGSIZE = 90;
export const EPROTOTYPE = 91;
export const ENOPROTOOPT = 92;
export const EPROTONOSUPPORT = 93;
export const EOPNOTSUPP = 95;
export const EAFNOSUPPORT = 97;
export const EADDRINUSE = 98;
export const EADDRNOTAVAIL = 99;
export const ENETDOWN = 100;
export const ENETUNREACH = 101;
export const ECONNABORTED = 103;
export const ECONNRESET = 104;
export const ENOBUFS = 105;
export const EISCONN = 106;
export const ENOTCONN = 107;
export const ETIMEDOUT = 110;
export const ECONNREFUSED = 111;
export const EHOSTUNREACH = 113;
export const EALREADY = 114;
export const EINPROGRESS = 115;
export const ECANCELED = 125;

/** Name and message of each errno, for printing and for the public error classes. */
const TABLE: ReadonlyArray<readonly [number, string, string]> = [
  [EPERM, "EPERM", "operation not permitted"],
  [ENOENT, "ENOENT", "no such file or directory"],
  [ESRCH, "ESRCH", "no such process"],
  [EINTR, "EINTR", "interrupted system call"],
  [EIO, "EIO", "input/output error"],
  [ENXIO, "ENXIO", "no such device or address"],
  [E2BIG, "E2BIG", "argument list too long"],
  [EBADF, "EBADF", "bad file descriptor"],
  [ECHILD, "ECHILD", "no child processes"],
  [EAGAIN, "EAGAIN", "resource temporarily unavailable"],
  [ENOMEM, "ENOMEM", "cannot allocate memory"],
  [EACCES, "EACCES", "permission denied"],
  [EFAULT, "EFAULT", "bad address"],
  [EBUSY, "EBUSY", "device or resource busy"],
  [EEXIST, "EEXIST", "file exists"],
  [EXDEV, "EXDEV", "invalid cross-device link"],
  [ENODEV, "ENODEV", "no such device"],
  [ENOTDIR, "ENOTDIR", "not a directory"],
  [EISDIR, "EISDIR", "is a directory"],
  [EINVAL, "EINVAL", "invalid argument"],
  [ENFILE, "ENFILE", "too many open files in system"],
  [EMFILE, "EMFILE", "too many open files"],
  [EFBIG, "EFBIG", "file too large"],
  [ENOSPC, "ENOSPC", "no space left on device"],
  [ESPIPE, "ESPIPE", "illegal seek"],
  [EROFS, "EROFS", "read-only file system"],
  [EMLINK, "EMLINK", "too many links"],
  [EPIPE, "EPIPE", "broken pipe"],
  [ERANGE, "ERANGE", "numerical result out of range"],
  [EDEADLK, "EDEADLK", "resource deadlock avoided"],
  [ENAMETOOLONG, "ENAMETOOLONG", "file name too long"],
  [ENOSYS, "ENOSYS", "function not implemented"],
  [ENOTEMPTY, "ENOTEMPTY", "directory not empty"],
  [ELOOP, "ELOOP", "too many levels of symbolic links"],
  [EBADMSG, "EBADMSG", "bad message"],
  [EOVERFLOW, "EOVERFLOW", "value too large for defined data type"],
  [ENOTSOCK, "ENOTSOCK", "socket operation on non-socket"],
  [EDESTADDRREQ, "EDESTADDRREQ", "destination address required"],
  [EMSGSIZE, "EMSGSIZE", "message too long"],
  [EPROTOTYPE, "EPROTOTYPE", "protocol wrong type for socket"],
  [ENOPROTOOPT, "ENOPROTOOPT", "protocol not available"],
  [EPROTONOSUPPORT, "EPROTONOSUPPORT", "protocol not supported"],
  [EOPNOTSUPP, "EOPNOTSUPP", "operation not supported"],
  [EAFNOSUPPORT, "EAFNOSUPPORT", "address family not supported by protocol"],
  [EADDRINUSE, "EADDRINUSE", "address already in use"],
  [EADDRNOTAVAIL, "EADDRNOTAVAIL", "cannot assign requested address"],
  [ENETDOWN, "ENETDOWN", "network is down"],
  [ENETUNREACH, "ENETUNREACH", "network is unreachable"],
  [ECONNABORTED, "ECONNABORTED", "software caused connection abort"],
  [ECONNRESET, "ECONNRESET", "connection reset by peer"],
  [ENOBUFS, "ENOBUFS", "no buffer space available"],
  [EISCONN, "EISCONN", "transport endpoint is already connected"],
  [ENOTCONN, "ENOTCONN", "transport endpoint is not connected"],
  [ETIMEDOUT, "ETIMEDOUT", "connection timed out"],
  [ECONNREFUSED, "ECONNREFUSED", "connection refused"],
  [EHOSTUNREACH, "EHOSTUNREACH", "no route to host"],
  [EALREADY, "EALREADY", "operation already in progress"],
  [EINPROGRESS, "EINPROGRESS", "operation now in progress"],
  [ECANCELED, "ECANCELED", "operation canceled"],
];

const BY_NUMBER = new Map<number, { readonly name: string; readonly message: string }>(
  TABLE.map(([n, name, message]) => [n, { name, message }]),
);

/** The symbolic name of an errno (`EFAULT`), or `E<n>` for a number the table does not know. */
export function errnoName(errno: number): string {
  const e = BY_NUMBER.get(Math.abs(errno));
  return e ? e.name : `E${Math.abs(errno)}`;
}

/** The human message of an errno (`bad address`). */
export function errnoMessage(errno: number): string {
  const e = BY_NUMBER.get(Math.abs(errno));
  return e ? e.message : `unknown error ${Math.abs(errno)}`;
}

/** Every errno the machine knows, as [number, name, message] rows. */
export function errnoTable(): ReadonlyArray<readonly [number, string, string]> {
  return TABLE;
}
