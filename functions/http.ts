import middy from '@middy/core';
import httpErrorHandler from '@middy/http-error-handler';
import httpJsonBodyParser from '@middy/http-json-body-parser';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { InvalidCursorError } from '../lib/store/dynamo-store.js';
import { AmbiguousWriteError, StoreUnavailableError } from '../lib/store/store.js';

/**
 * The HTTP layer of the task API: middy turns API Gateway events into calls of plain
 * operations and every failure into a JSON answer `{ "error": <code>, "message": <what to do> }`.
 * The operations know nothing of HTTP except the status of a success; the refusals come
 * from TaskAdmin's errors, which carry their status.
 */
export interface HttpResult {
  statusCode: number;
  body: unknown;
}

export type Operation = (event: APIGatewayProxyEventV2) => Promise<HttpResult>;

/** An answer with a status and a message meant for the caller. */
export class HttpProblem extends Error {
  readonly expose = true;
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HttpProblem';
  }
}

const jsonHeaders = { 'Content-Type': 'application/json' };

/** The refusal for a known failure, or undefined for a bug (which becomes a logged 500). */
export function problemFor(error: unknown): HttpProblem | undefined {
  if (error instanceof HttpProblem) return error;
  const e = error as { name?: string; message?: string; status?: unknown; statusCode?: unknown; cause?: { package?: string; message?: string } };
  if (e.cause?.package === '@middy/http-json-body-parser') {
    if (e.message === 'Unsupported Media Type') return new HttpProblem(415, 'UnsupportedMediaType', 'send the body as JSON with Content-Type: application/json');
    return e.cause.message
      ? new HttpProblem(400, 'InvalidJson', `the body is not valid JSON: ${e.cause.message}`)
      : new HttpProblem(400, 'InvalidJson', 'the body is missing: send a JSON object');
  }
  if (error instanceof InvalidCursorError) return new HttpProblem(400, 'InvalidCursor', `${error.message}; start again without a cursor`);
  if (error instanceof StoreUnavailableError || error instanceof AmbiguousWriteError) {
    // Retrying is safe: creation is idempotent on id, and the other changes are conditional.
    return new HttpProblem(503, 'Unavailable', 'the task table did not answer in time; try again');
  }
  // TaskAdmin's refusals: InvalidInputError 400, TaskNotFoundError 404, TaskConflictError 409, PayloadTooLargeError 413.
  if (error instanceof Error && typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
    return new HttpProblem(e.status, error.name.replace(/Error$/, ''), error.message);
  }
  return undefined;
}

const problemResponses = (): middy.MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2> => ({
  onError: async (request) => {
    const problem = problemFor(request.error);
    if (!problem) return; // left to http-error-handler: a 500 with a generic body, logged
    request.error = Object.assign(new Error(JSON.stringify({ error: problem.code, message: problem.message })), {
      statusCode: problem.statusCode,
      expose: true,
    });
  },
});

const internalError = JSON.stringify({ error: 'InternalError', message: 'the request failed on our side; see the function log' });

/** Logs what is a bug or an outage; a caller's mistake is answered, not logged as an error. */
function logUnexpected(error: unknown): void {
  const status = (error as { statusCode?: number }).statusCode;
  if (status === undefined || status >= 500) console.error(error);
}

/**
 * Wraps an operation for API Gateway (HTTP API, payload format 2.0). With `jsonBody`, the
 * body is parsed first and a malformed one never reaches the operation.
 */
export function httpHandler(operation: Operation, options: { jsonBody?: boolean } = {}) {
  const handler = middy<APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Error, Context>()
    // onError middlewares run last-registered first: problemResponses shapes the error,
    // then http-error-handler writes the response.
    .use(httpErrorHandler({ logger: logUnexpected, fallbackMessage: internalError }))
    .use(problemResponses());
  if (options.jsonBody) handler.use(httpJsonBodyParser<APIGatewayProxyEventV2>());
  return handler.handler(async (event) => {
    const result = await operation(event);
    return { statusCode: result.statusCode, headers: jsonHeaders, body: JSON.stringify(result.body) };
  });
}
