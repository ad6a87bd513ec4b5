// opsrunner.d.ts — the script API of opsrunner operations, for editors and
// `tsc --noEmit` over plain JavaScript (jsconfig.json with "checkJs": true).
//
// These declarations describe exactly what a script sees on top of the
// ECMAScript built-ins (ES2020 library; no DOM, no Node.js): nothing outside
// them exists — no XMLHttpRequest, Request, URL, URLSearchParams,
// TextEncoder/TextDecoder, setInterval, queueMicrotask, atob/btoa, require or
// import. A test in the opsrunner repository (sdk/globals_test.go) fails when
// a global of the runtime is missing here, or one declared here is missing
// from the runtime.
//
// Print this file with `opsrunner types`; `opsrunner init DIR` writes it next
// to a new project's jsconfig.json.
//
// A script is a plain script, not an ES module: it defines
//
//     function handle(event, ctx) { ... }
//
// (or assigns module.exports = function (event, ctx) {...}, or
// exports.handle = ...), which may return a value or a Promise. Annotate it
// with the types of the trigger it serves, e.g.
//
//     /** @param {opsrunner.WebhookEvent} event @param {opsrunner.Context} ctx */
//     function handle(event, ctx) { ... }
//
// or, for an operation that several triggers run, narrow opsrunner.Event:
// `if ("messageId" in event)` (a message), `if ("method" in event)` (a
// webhook), `if (event.trigger === "schedule")`.

/** Types of the script API; reach them in JSDoc as `opsrunner.Name`. */
declare namespace opsrunner {
  /** What started the run: ctx.trigger. */
  type Trigger = "webhook" | "listener" | "operation" | "schedule";

  /**
   * The event of an operation run by an HTTP webhook
   * (POST /hooks/{project}/{path}); a webhook run with
   * `Prefer: respond-async` gets the same event.
   */
  interface WebhookEvent {
    /** The request method, e.g. "POST". */
    method: string;
    /** The webhook's path, as in the manifest (`webhook.path`). */
    path: string;
    /** Request headers: lower-case names, repeated values joined with ", ". */
    headers: Record<string, string>;
    /** Query parameters: a string, or an array when the name is repeated. */
    query: Record<string, string | string[]>;
    /**
     * The body: parsed when the Content-Type is JSON (application/json or
     * any +json type; a body that does not parse is refused with 400), the
     * text otherwise, null when the request has no body.
     */
    body: any;
    /** The body as sent, as text ("" when empty). */
    rawBody: string;
  }

  /**
   * A message's properties under CloverDX's names, all strings:
   * JMS_PROP_<name> for each header the producer set, and the JMS_MSG_*
   * names below.
   */
  interface MessageProperties {
    [name: `JMS_PROP_${string}`]: string;
    JMS_MSG_CORRELATIONID: string;
    JMS_MSG_DESTINATION: string;
    JMS_MSG_MESSAGEID: string;
    JMS_MSG_REPLYTO: string;
    JMS_MSG_TYPE: string;
    /** "PERSISTENT" or "NON_PERSISTENT". */
    JMS_MSG_DELIVERYMODE: string;
    /** Milliseconds since the epoch; "0" when the message does not expire. */
    JMS_MSG_EXPIRATION: string;
    /** "0" to "9"; "4" when unset. */
    JMS_MSG_PRIORITY: string;
    /** "true" or "false". */
    JMS_MSG_REDELIVERED: string;
    JMS_MSG_TIMESTAMP: string;
  }

  /** The event of an operation run by a listener for one broker message. */
  interface MessageEvent {
    /** The broker's message id (what Acknowledge's messageId is compared with). */
    messageId: string;
    /** Where the message was received, e.g. "/queue/orders". */
    destination: string;
    /**
     * The body: parsed when the message's content-type mentions JSON (the
     * text when it does not parse), the text otherwise.
     */
    body: any;
    properties: MessageProperties;
    /** Every header of the message as received. */
    headers: Record<string, string>;
    /** The message was delivered before (deliveryCount > 1, or the broker says so). */
    redelivered: boolean;
    /** The attempt, from 1; counted by opsrunner, whatever the broker. */
    deliveryCount: number;
  }

  /** The event of an operation run by a schedule tick (manifest `schedules`). */
  interface ScheduleEvent {
    trigger: "schedule";
    /** The schedule's name. */
    schedule: string;
    /** When the tick was due (RFC 3339). */
    scheduledAt: string;
    /** When it fired (RFC 3339); later than scheduledAt for a catch-up run. */
    firedAt: string;
    /** The schedule's `input` from the manifest (null when none). */
    body: any;
  }

  /**
   * The event of a run started by a trigger. An operation called with
   * RunOperation(ref, wait, input) gets `input` (the caller's event when
   * input is omitted) instead: type such an operation's event yourself.
   */
  type Event = WebhookEvent | MessageEvent | ScheduleEvent;

  /** ctx.message: the chain's delivery, with the message event's fields. */
  interface Delivery extends MessageEvent {
    /** The broker message id. */
    id: string;
    /** Commits the delivery now (as Acknowledge("JBXCommit")); throws when it cannot. */
    commit(): void;
    /**
     * Rolls the delivery back now (as Acknowledge("JBXRollback")): it is
     * redelivered after the backoff, or dead-lettered after maxRedeliveries.
     * `reason` becomes the recorded cause (the dead letter's error).
     */
    rollback(reason?: string): void;
  }

  /** A handler's second argument. */
  interface Context {
    /** The run id (GET /api/v1/runs/{id}). */
    run: string;
    /** The project of the running operation. */
    project: string;
    /** The running operation's name. */
    operation: string;
    /**
     * What started the run: "webhook", "listener" (a broker message),
     * "operation" (a run queued by RunOperation(ref, false)) or "schedule".
     * An operation called with RunOperation(ref, true) sees its caller's.
     */
    trigger: Trigger;
    /** The delivery, when the run handles a broker message (trigger "listener"). */
    message?: Delivery;
  }

  /** ctx in a run that handles a broker message. */
  interface ListenerContext extends Context {
    trigger: "listener";
    message: Delivery;
  }

  /**
   * What a webhook's operation may return to shape the HTTP answer: an
   * object with a numeric `status` (100–599) and no members but status,
   * headers and body. A string body is sent as text/plain, any other body
   * as JSON; a header value that is not a string is sent as its JSON. Any
   * other return value is answered as JSON with 200; undefined or null is a
   * 204.
   */
  interface WebhookResponse {
    status: number;
    headers?: Record<string, string | number | boolean>;
    body?: unknown;
  }

  /** A handler: `function handle(event, ctx)`, or module.exports. */
  type Handler<E = Event, C extends Context = Context> = (event: E, ctx: C) => unknown;

  /**
   * A listener's filter script: `function filter(event, ctx)`, run before
   * the operations; a falsy result (or a Promise of one, or a failure)
   * refuses the message, which is rolled back. Its ctx has trigger
   * "listener" and no message (the delivery is not the filter's to settle).
   */
  type Filter = (event: MessageEvent, ctx: Context) => unknown;

  /** The options of SendMessage. */
  interface SendOptions {
    /** Message headers (JMS properties); values are sent as strings. */
    headers?: Record<string, string | number | boolean>;
    /** Sent as the `persistent` header. */
    persistent?: boolean;
    /** 0–9, sent as the `priority` header. */
    priority?: number;
    /** Sent as `correlation-id`. */
    correlationId?: string;
    /** Sent as `reply-to`. */
    replyTo?: string;
    /** Sent as `type`. */
    type?: string;
    /**
     * Seconds a listener may take to acknowledge this message, written as
     * the JBXAcknowledgmentTimeout property.
     */
    ackTimeout?: number;
  }

  /**
   * The Error RunOperation(ref, true) throws when the called operation
   * fails: its message is the failure's.
   */
  interface OperationError extends Error {
    /** The called operation's name. */
    operation: string;
    /** How it ended. */
    status: "failed" | "timed_out";
  }

  /** log and console: each call adds one line to the run's log. */
  interface Logger {
    /** Arguments are joined with spaces; objects are written as JSON. */
    info(...args: unknown[]): void;
    warn(...args: unknown[]): void;
    error(...args: unknown[]): void;
    debug(...args: unknown[]): void;
  }

  /** The acknowledge actions, case-insensitive ("jbxcommit" works too). */
  type AcknowledgeAction = "JBXCommit" | "JBXRollback" | (string & {});

  /** What fetch's `init` may hold. */
  interface RequestInit {
    /** Any method; upper-cased. Default "GET". */
    method?: string;
    headers?: HeadersInit;
    /**
     * A string (sent as UTF-8, with content-type text/plain;charset=UTF-8
     * unless a content-type is given), an ArrayBuffer or a typed array /
     * DataView (sent as is). For JSON, pass JSON.stringify(value) and set the
     * content-type. Any other value is a TypeError; so is a body on GET or
     * HEAD.
     */
    body?: string | ArrayBuffer | ArrayBufferView | null;
    /** Aborting it rejects the fetch with the signal's reason and closes the connection. */
    signal?: AbortSignal | null;
    /**
     * Milliseconds until the fetch rejects with an Error named
     * "TimeoutError". Not standard; with AbortSignal.timeout too, the
     * shorter wins. A negative or non-numeric value is a TypeError.
     */
    timeout?: number;
    /**
     * What a redirect answer (301, 302, 303, 307, 308) does. "follow" (the
     * default): it is followed, up to the agent's egress.max_redirects, each
     * hop checked against the project's egress; `redirected` is then true.
     * "manual": the redirect response itself is returned (its status,
     * headers with Location, body; `ok` and `redirected` false). "error":
     * the fetch rejects with a TypeError naming the host. Any other value is
     * a TypeError.
     */
    redirect?: RequestRedirect;
  }

  type RequestRedirect = "follow" | "manual" | "error";

  type HeadersInit = Headers | Record<string, string> | Iterable<[string, string]>;

  interface ResponseInit {
    /** An integer from 200 to 599 (RangeError otherwise). Default 200. */
    status?: number;
    statusText?: string;
    headers?: HeadersInit;
  }

  /** The event AbortSignal's listeners receive. */
  interface AbortEvent {
    type: "abort";
    target: AbortSignal;
  }
}

/**
 * Runs another operation in this chain's context: `ref` is an operation
 * name, "project/name" (the other project must export it to this one), or
 * the seed's "<TAG>Operations/name</TAG>". The called operation gets `input`
 * as its event (this operation's event when input is omitted) and shares
 * the chain's variables.
 *
 * With wait true (the default) it runs the operation and its
 * onSuccess/onFailure chain now, returns the operation's result and throws
 * an opsrunner.OperationError when the operation fails. When the operation
 * or an operation of its chain returns a pending Promise, it returns a
 * Promise instead: settled once the whole chain has ended (each member
 * awaited before the next), with the operation's value, its rejection's
 * reason or an OperationError. `await RunOperation(ref)` works either way.
 */
declare function RunOperation(ref: string, wait?: true, input?: unknown): any;
/**
 * With wait false it queues the run for the least-loaded agent (trigger
 * "operation"; input and the chain variables travel as JSON) and returns
 * the queued run's id.
 */
declare function RunOperation(ref: string, wait: false, input?: unknown): string;
declare function RunOperation(ref: string, wait: boolean, input?: unknown): any;

/**
 * Commits ("JBXCommit") or rolls back ("JBXRollback", case-insensitive) the
 * chain's delivery; other spellings throw. messageId, when given, must be
 * the chain's message id. Throws in a run that handles no message.
 */
declare function Acknowledge(action: opsrunner.AcknowledgeAction, messageId?: string): void;

/**
 * Sends (queue) or publishes (topic) a message. A string body is sent as
 * is; any other value as its JSON, with content-type application/json. In
 * a run handling a message, the send joins the delivery's transaction: it
 * happens only if the delivery commits. Throws on a refused destination or
 * without a broker connection.
 */
declare function SendMessage(destination: string, body?: unknown, opts?: opsrunner.SendOptions): void;

/** Reads a chain variable (undefined when unset). */
declare function Get(name: string): any;

/** Fails the operation with `message` (its onFailure chain runs). */
declare function RaiseError(message?: string): never;

/**
 * Why the last operation of this chain failed ("" when none did): read it
 * in an onFailure operation.
 */
declare function GetLastError(): string;

/**
 * Set(name, value) sets a chain variable, shared by every operation of the
 * run. `new Set(...)` is still the ECMAScript Set.
 */
interface SetConstructor {
  (name: string, value: unknown): void;
}

/** The chain variables as an object: $vars.name is Get("name"). */
declare const $vars: Record<string, any>;

/** The run's log (opsrunner runs RUN-ID). */
declare const log: opsrunner.Logger;

/** The same as log; console.log is log.info. */
declare const console: opsrunner.Logger & { log(...args: unknown[]): void };

/**
 * Makes an HTTP request to a host the manifest's `egress` allows and
 * resolves with the whole response, its body read (so that a Response never
 * holds a connection). It never throws: every failure is a rejected Promise: a TypeError naming the host (refused by egress,
 * connection refused, DNS, TLS, body over the limit...), an Error named
 * "TimeoutError" (the `timeout` or AbortSignal.timeout passed), or the
 * abort reason. `input` is an absolute http(s) URL, or an object whose
 * `url` is one. Any response status resolves: check resp.ok.
 */
declare function fetch(input: string | { url: string }, init?: opsrunner.RequestInit): Promise<Response>;

/** Header names are case-insensitive and kept lower-cased. */
declare class Headers {
  constructor(init?: opsrunner.HeadersInit | null);
  /** Adds a value; a name already present gets "old, new". */
  append(name: string, value: string): void;
  set(name: string, value: string): void;
  /** The value, several values joined with ", "; null when absent. */
  get(name: string): string | null;
  has(name: string): boolean;
  delete(name: string): void;
  forEach(callback: (value: string, name: string, headers: Headers) => void, thisArg?: any): void;
  /** [name, value] pairs sorted by name. */
  entries(): IterableIterator<[string, string]>;
  keys(): IterableIterator<string>;
  values(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, string]>;
}

declare class Response {
  /** For building responses yourself (tests, fallbacks); fetch makes its own. */
  constructor(body?: string | ArrayBuffer | ArrayBufferView | null, init?: opsrunner.ResponseInit);
  /** A Response of JSON.stringify(data), with content-type application/json unless given. */
  static json(data: any, init?: opsrunner.ResponseInit): Response;
  readonly status: number;
  /** status is 200–299. */
  readonly ok: boolean;
  /** The reason phrase ("Not Found"); may be "". */
  readonly statusText: string;
  readonly headers: Headers;
  /** The final URL, after redirects, without its fragment (with redirect "manual": the URL fetched). */
  readonly url: string;
  /** At least one redirect was followed (never with redirect "manual" or "error"). */
  readonly redirected: boolean;
  /** "basic" for a fetched response, "default" for one built with new Response. */
  readonly type: "basic" | "default";
  /** The body has been read: a second read rejects with a TypeError. */
  readonly bodyUsed: boolean;
  /** The body decoded as UTF-8 (invalid bytes become U+FFFD). */
  text(): Promise<string>;
  /** JSON.parse of text(); rejects when the body is not JSON. */
  json(): Promise<any>;
  arrayBuffer(): Promise<ArrayBuffer>;
  /** A copy whose body can be read on its own; throws a TypeError once the body has been read. */
  clone(): Response;
}

declare class AbortController {
  readonly signal: AbortSignal;
  /**
   * Aborts the signal once: its listeners and onabort run, and fetches
   * using it reject with `reason`, by default an Error named "AbortError".
   */
  abort(reason?: any): void;
}

declare class AbortSignal {
  readonly aborted: boolean;
  readonly reason: any;
  onabort: ((event: opsrunner.AbortEvent) => void) | null;
  addEventListener(type: "abort", listener: (event: opsrunner.AbortEvent) => void): void;
  removeEventListener(type: "abort", listener: (event: opsrunner.AbortEvent) => void): void;
  /** Throws the reason when aborted. */
  throwIfAborted(): void;
  /** A signal already aborted. */
  static abort(reason?: any): AbortSignal;
  /**
   * A signal fetch applies as its timeout (a TimeoutError after ms). It
   * sets no timer: it never becomes aborted outside fetch.
   */
  static timeout(ms: number): AbortSignal;
}

/**
 * Calls callback(...args) after ms milliseconds (missing, NaN or negative:
 * 0; at most 2^31-1), within the operation's time limit. Returns an id for clearTimeout. An
 * exception the callback throws fails the operation.
 */
declare function setTimeout<A extends any[]>(callback: (...args: A) => void, ms?: number, ...args: A): number;

/** Cancels a timer; unknown ids and timers that have fired are ignored. */
declare function clearTimeout(id: number | undefined): void;

/** A Promise fulfilled after ms milliseconds. */
declare function sleep(ms: number): Promise<void>;

/**
 * The manifest's `env` of the running operation's project: a frozen object,
 * so Object.keys(env) lists the names. A name not in the manifest reads
 * undefined (the type says string for convenience).
 */
declare const env: Readonly<Record<string, string>>;

/**
 * The project's secrets (set with `opsrunner secrets set`, never in the
 * bundle): reading secrets.NAME fetches that secret once per run; an unset
 * one is undefined, and `"NAME" in secrets` tells whether it is set. The
 * object is read-only and lists no names: Object.keys(secrets) is []. Every
 * value read is replaced by *** in the run's logs, errors and result.
 */
declare const secrets: Readonly<Record<string, string | undefined>>;
