#!/usr/bin/env node
// The `keeper` command. It runs the CLI in this very process (no wrapper), so that signals
// sent to this pid (SIGTERM from ECS, SIGKILL or SIGSTOP from the fault harness) reach the
// worker itself.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
await import('../dist/cli/main.js');
