#!/usr/bin/env node
import { ConfigError, exitCodeOf, NucleonError } from './errors.js';
import { CLI_COMMANDS as commands } from './cli/commands.js';
import { nucleonVersion } from './version.js';

const version = nucleonVersion;

function help(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`);
  return `nucleon ${version()}: IoT device broker

Usage: nucleon <command> [options]

Commands:
${lines.join('\n')}

Options:
  --help      show help (also: nucleon <command> --help)
  --version   print the version`;
}

/** Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error. */
async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`nucleon: unknown command "${name}" (see nucleon --help)\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  return command.run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof ConfigError) {
      // One line per problem, each naming the file and the key path.
      process.stderr.write(error.problems.map((problem) => `nucleon: ${problem}\n`).join(''));
      process.exitCode = exitCodeOf(error.code);
    } else if (error instanceof NucleonError) {
      process.stderr.write(`nucleon: ${error.message}\n`);
      process.exitCode = exitCodeOf(error.code);
    } else if ((error as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || (error as { code?: string }).code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      process.stderr.write(`nucleon: ${(error as Error).message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`nucleon: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
