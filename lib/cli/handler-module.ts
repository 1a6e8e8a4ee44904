import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { checkHandlers, InvalidHandlersError, type TaskHandlers } from '../task-handlers.js';

/**
 * Loads a user's handler module for `keeper worker --handlers <module>[#export]`: an ES module
 * whose default export (or named export `handlers`, or the export named after `#`) maps task
 * types to handlers. Every way it can be wrong is a {@link HandlerModuleError} whose message
 * is one line that says what to fix; the worker has not started, and nothing was written.
 */
export class HandlerModuleError extends Error {
  override name = 'HandlerModuleError';
}

/** Where a handler map may be exported, in the order they are looked for. */
export const handlerExports = ['default', 'handlers'] as const;

export async function loadHandlerModule(spec: string, cwd = process.cwd()): Promise<TaskHandlers> {
  const hash = spec.lastIndexOf('#');
  const path = hash > 0 ? spec.slice(0, hash) : spec;
  const exportName = hash > 0 ? spec.slice(hash + 1) : undefined;
  if (path.trim() === '') throw new HandlerModuleError('--handlers needs a module path, e.g. --handlers ./dist/handlers.js');
  if (exportName !== undefined && !/^[A-Za-z_$][\w$]*$/.test(exportName)) {
    throw new HandlerModuleError(`--handlers ${spec}: "${exportName}" is not an export name; write <module>#<export>, e.g. ./dist/handlers.js#handlers`);
  }
  const file = resolve(cwd, path);
  if (!existsSync(file) || !statSync(file).isFile()) throw new HandlerModuleError(`handler module ${path} not found (looked for ${file})`);

  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw new HandlerModuleError(`handler module ${path} cannot be loaded by Node.js as it is: compile it to JavaScript (.js or .mjs) first`);
    }
    const first = (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).split('\n')[0];
    throw new HandlerModuleError(`handler module ${path} failed to load: ${first}`);
  }

  const names = exportName !== undefined ? [exportName] : handlerExports;
  const found = names.find((name) => module[name] !== undefined);
  if (found === undefined) {
    const exported = Object.keys(module).filter((k) => k !== 'default');
    const has = exported.length > 0 ? `it exports ${exported.map((k) => `"${k}"`).join(', ')}` : 'it exports nothing else';
    throw new HandlerModuleError(
      exportName !== undefined
        ? `handler module ${path} has no export "${exportName}"; ${has}`
        : `handler module ${path} has neither a default export nor an export "handlers"; ${has}. Export the map of task type to handler as one of them`,
    );
  }
  try {
    return checkHandlers(module[found], `handler module ${path} (export "${found}")`);
  } catch (error) {
    if (error instanceof InvalidHandlersError) throw new HandlerModuleError(error.message);
    throw error;
  }
}
