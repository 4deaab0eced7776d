/**
 * Named errors with stable codes. The CLI maps them to exit codes and the admin
 * protocol sends `code` to clients; README "Errors" lists them.
 */
export class NucleonError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The configuration file is missing, unreadable or invalid; `problems` holds one line per error. */
export class ConfigError extends NucleonError {
  constructor(
    readonly problems: string[],
    options?: { cause?: unknown },
  ) {
    super('CONFIG_INVALID', problems.join('\n'), options);
  }
}

/** A listener could not bind (port in use, permission denied, bad address). */
export class ListenError extends NucleonError {
  constructor(
    readonly what: string,
    readonly address: string,
    cause: unknown,
  ) {
    const reason = describeListenCause(cause);
    super('LISTEN_FAILED', `cannot listen for ${what} on ${address}: ${reason}`, { cause });
  }
}

export class DuplicateRunnerError extends NucleonError {
  constructor(name: string) {
    super('DUPLICATE_RUNNER', `a runner named "${name}" is already registered`);
  }
}

export class BrokerStoppedError extends NucleonError {
  constructor() {
    super('BROKER_STOPPED', 'the event broker is stopped and takes no more events');
  }
}

/** Raised to a producer when a runner's inbox and its wait list are both full. */
export class BrokerOverloadedError extends NucleonError {
  constructor(runner: string) {
    super('BROKER_OVERLOADED', `runner "${runner}" is overloaded: inbox and wait list are full`);
  }
}

/**
 * An internal of aedes or one of its dependencies that Nucleon relies on (see
 * src/mqtt/aedes/) is not what it was written against: the start fails before
 * any listener opens, naming the package, its installed version and what moved.
 */
export class DependencyMismatchError extends NucleonError {
  constructor(
    readonly dependency: string,
    readonly version: string,
    what: string,
  ) {
    super('DEPENDENCY_MISMATCH', `${dependency}@${version}: ${what}; Nucleon pins the versions it was built against (package.json), reinstall with npm ci`);
  }
}

function describeListenCause(cause: unknown): string {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EADDRINUSE') return 'address already in use';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EADDRNOTAVAIL') return 'address not available on this machine';
  return cause instanceof Error ? cause.message : String(cause);
}
