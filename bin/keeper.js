#!/usr/bin/env node
// The `keeper` command. It runs the CLI in this very process (no wrapper), so that signals
// sent to this pid (SIGTERM from ECS, SIGKILL or SIGSTOP from the fault harness) reach the
// worker itself.
import { setFlagsFromString } from 'node:v8';

// A worker's live heap is small (about 17 MB with 1,000 tasks); without this V8 lets the heap
// grow to several times that after a burst of claims before giving memory back.
setFlagsFromString('--optimize-for-size');
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
await import('../dist/cli/main.js');
