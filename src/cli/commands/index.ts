/** The command registry: every `exocore` command but `help`, which main.ts defines itself. */

import type { Command } from "../args.js";
import { benchQueue } from "./bench-queue.js";
import { benchSyscalls } from "./bench-syscalls.js";
import { demo } from "./demo.js";
import { run } from "./run.js";
import { version } from "./version.js";

export const COMMANDS: readonly Command[] = [benchQueue, benchSyscalls, demo, run, version];
