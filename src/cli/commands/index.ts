/** The command registry: every `exocore` command but `help`, which main.ts defines itself. */

import type { Command } from "../args.js";
import { benchNetwork } from "./bench-network.js";
import { benchQueue } from "./bench-queue.js";
import { benchServers } from "./bench-servers.js";
import { benchStorage } from "./bench-storage.js";
import { benchSyscalls } from "./bench-syscalls.js";
import { demo } from "./demo.js";
import { run } from "./run.js";
import { version } from "./version.js";

export const COMMANDS: readonly Command[] = [
  benchNetwork,
  benchQueue,
  benchServers,
  benchStorage,
  benchSyscalls,
  demo,
  run,
  version,
];
