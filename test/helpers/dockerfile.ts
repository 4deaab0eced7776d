// The repository's Dockerfile read through dockerfile-ast (the parser of the
// Dockerfile language server), for the tests that check its rules and run its
// runtime layout without a Docker engine.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { repoRoot } from './index.js';

export const dockerfilePath = path.join(repoRoot, 'Dockerfile');

export interface Stage {
  /** `AS <name>`, or undefined for an unnamed stage. */
  name: string | undefined;
  image: string;
  instructions: Instruction[];
}

export interface ParsedDockerfile {
  text: string;
  stages: Stage[];
  /** The stage the image is made of (the last one). */
  runtime: Stage;
}

export function readDockerfile(): ParsedDockerfile {
  const text = readFileSync(dockerfilePath, 'utf8');
  const stages: Stage[] = [];
  for (const instruction of DockerfileParser.parse(text).getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const [image = '', as, name] = instruction.getArguments().map((argument) => argument.getValue());
      stages.push({ image, name: as?.toUpperCase() === 'AS' ? name : undefined, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile: ${instruction.getKeyword()} before the first FROM`);
      stage.instructions.push(instruction);
    }
  }
  const runtime = stages.at(-1);
  if (!runtime) throw new Error('Dockerfile: no FROM');
  return { text, stages, runtime };
}

export function instructionsOf(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.getKeyword() === keyword);
}

/** The one instruction of a kind in a stage; more than one is a mistake Docker would silently resolve (the last wins). */
export function only(instructions: Instruction[], keyword: string): Instruction {
  const [first, ...more] = instructions;
  if (!first || more.length > 0) throw new Error(`expected exactly one ${keyword} in the stage, found ${instructions.length}`);
  return first;
}

/** The arguments of an exec-form (JSON array) instruction, after an optional leading word such as HEALTHCHECK's `CMD`. */
export function execForm(instruction: Instruction, leadingWord?: string): string[] {
  let content = (instruction.getArgumentsContent() ?? '').replace(/\\\n/g, ' ').trim();
  if (leadingWord !== undefined) {
    if (!content.startsWith(`${leadingWord} `)) throw new Error(`${instruction.getKeyword()}: expected "${leadingWord} [...]", got ${content}`);
    content = content.slice(leadingWord.length).trim();
  }
  const parsed: unknown = JSON.parse(content);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) throw new Error(`${instruction.getKeyword()}: expected a JSON array of strings, got ${content}`);
  return parsed;
}

/** `ENV` variables set in a stage (both `K=V` pairs and the legacy `ENV K V`). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const instruction of instructionsOf(stage, 'ENV')) {
    const args = instruction.getArguments().map((argument) => argument.getValue());
    if (args.length > 0 && !args[0]?.includes('=')) {
      env[args[0] ?? ''] = args.slice(1).join(' ');
      continue;
    }
    for (const pair of args) {
      const at = pair.indexOf('=');
      env[pair.slice(0, at)] = pair.slice(at + 1);
    }
  }
  return env;
}

export interface CopyStep {
  /** `--from=<stage>`, or undefined for the build context. */
  from: string | undefined;
  sources: string[];
  destination: string;
}

export function copiesOf(stage: Stage): CopyStep[] {
  return instructionsOf(stage, 'COPY').map((instruction) => {
    if (!(instruction instanceof Copy)) throw new Error(`line ${instruction.getRange().start.line + 1}: COPY not parsed as a COPY`);
    const paths = instruction.getArguments().map((argument) => argument.getValue());
    const destination = paths.pop();
    if (destination === undefined || paths.length === 0) throw new Error(`COPY ${instruction.getArgumentsContent() ?? ''}: expected sources and a destination`);
    return { from: instruction.getFromFlag()?.getValue() ?? undefined, sources: paths, destination };
  });
}
