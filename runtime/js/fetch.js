// The WHATWG fetch subset scripts see: fetch, Headers, Response,
// AbortController and AbortSignal. The request itself is made in Go
// (runtime/fetch.go, host.fetch); this file only shapes its arguments and
// results. It runs once per runtime, before the intrinsics are frozen.
(function(host) {
'use strict';
const g = globalThis, NativeMap = Map, TE = TypeError, isExtensible = Object.isExtensible;
// The Maps of fetched headers frozen (or sealed) before their first read.
const frozenMaps = new WeakMap();
const store = Symbol('headers'), listeners = Symbol('listeners'), bodyOf = Symbol('body'),
	timeoutOf = Symbol('timeout');

function namedError(name, message) {
	const e = new Error(message);
	e.name = name;
	return e;
}

function headerName(name) {
	const n = String(name).toLowerCase();
	if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(n)) throw new TE('invalid header name: ' + JSON.stringify(String(name)));
	return n;
}

function headerValue(value) {
	const v = String(value).replace(/^[\t ]+|[\t ]+$/g, '');
	if (/[\0\r\n]/.test(v)) throw new TE('invalid header value: it contains a line break or NUL');
	return v;
}

// mapOf is the Map of h's headers, lower-case names to values. A fetch's
// Response headers stay in Go until first read (most scripts never read
// them): host.headers gives them then.
function mapOf(h) {
	const m = h[store];
	if (m !== undefined) return m;
	return frozenMaps.get(h) || fill(h, host.headers(h));
}

// fill gives h the headers in pairs ([name, value, ...], names lower-case
// and values joined already) and returns their Map.
function fill(h, pairs) {
	const m = new NativeMap();
	for (let i = 0; i < pairs.length; i += 2) m.set(pairs[i], pairs[i + 1]);
	if (isExtensible(h)) {
		h[store] = m;
	} else {
		frozenMaps.set(h, m);
	}
	return m;
}

class Headers {
	constructor(init) {
		this[store] = new NativeMap();
		if (init === undefined || init === null) return;
		if (init instanceof Headers) {
			init.forEach((v, k) => this.append(k, v));
		} else if (typeof init[Symbol.iterator] === 'function') {
			for (const pair of init) {
				if (!pair || pair.length !== 2) throw new TE('Headers: each header must be a [name, value] pair');
				this.append(pair[0], pair[1]);
			}
		} else if (typeof init === 'object') {
			for (const k of Object.keys(init)) this.append(k, init[k]);
		} else {
			throw new TE('Headers: expected an object, an array of pairs or Headers');
		}
	}
	append(name, value) {
		const k = headerName(name), v = headerValue(value), m = mapOf(this);
		m.set(k, m.has(k) ? m.get(k) + ', ' + v : v);
	}
	set(name, value) { mapOf(this).set(headerName(name), headerValue(value)); }
	get(name) { const v = mapOf(this).get(headerName(name)); return v === undefined ? null : v; }
	has(name) { return mapOf(this).has(headerName(name)); }
	delete(name) { mapOf(this).delete(headerName(name)); }
	forEach(fn, thisArg) { for (const [k, v] of this.entries()) fn.call(thisArg, v, k, this); }
	*entries() {
		const m = mapOf(this), keys = Array.from(m.keys()).sort();
		for (const k of keys) yield [k, m.get(k)];
	}
	*keys() { for (const [k] of this.entries()) yield k; }
	*values() { for (const [, v] of this.entries()) yield v; }
	[Symbol.iterator]() { return this.entries(); }
}

// toBytes turns a body into an ArrayBuffer (or a string, kept as is).
function toBytes(body, what) {
	if (body === undefined || body === null) return undefined;
	if (typeof body === 'string') return body;
	if (body instanceof ArrayBuffer) return body;
	if (ArrayBuffer.isView(body)) return body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength);
	throw new TE(what + ' must be a string, an ArrayBuffer or a typed array; for an object use JSON.stringify(value)');
}

// takeText marks r's body read and returns it as a string.
function takeText(r) {
	r.bodyUsed = true;
	const b = r[bodyOf];
	r[bodyOf] = undefined;
	if (b === undefined) return '';
	return typeof b === 'string' ? b : host.decode(b);
}

// parseBody marks r's body read and parses it as JSON.parse(text) would:
// a body fetch read is parsed from its bytes (host.json), without a string
// made for it first.
function parseBody(r) {
	r.bodyUsed = true;
	const b = r[bodyOf];
	r[bodyOf] = undefined;
	if (b === undefined) return JSON.parse('');
	return typeof b === 'string' ? JSON.parse(b) : host.json(b);
}

class Response {
	constructor(body, init) {
		init = init || {};
		const status = init.status === undefined ? 200 : Number(init.status);
		if (!(status >= 200 && status <= 599) || Math.floor(status) !== status) throw new RangeError('Response: status must be an integer from 200 to 599');
		this.status = status;
		this.statusText = init.statusText === undefined ? '' : String(init.statusText);
		this.headers = new Headers(init.headers);
		this.url = '';
		this.redirected = false;
		this.type = 'default';
		this[bodyOf] = toBytes(body, 'Response body');
		this.bodyUsed = false;
	}
	get ok() { return this.status >= 200 && this.status <= 299; }
	arrayBuffer() {
		if (this.bodyUsed) return Promise.reject(new TE('Response: body has already been read'));
		this.bodyUsed = true;
		const b = this[bodyOf];
		this[bodyOf] = undefined;
		if (b === undefined) return Promise.resolve(new ArrayBuffer(0));
		return Promise.resolve(typeof b === 'string' ? host.encode(b) : b);
	}
	text() {
		if (this.bodyUsed) return Promise.reject(new TE('Response: body has already been read'));
		return Promise.resolve(takeText(this));
	}
	// json parses at once: the body is already read whole, and a Promise
	// and a reaction fewer per call are a measurable share of a fetch.
	json() {
		if (this.bodyUsed) return Promise.reject(new TE('Response: body has already been read'));
		try {
			return Promise.resolve(parseBody(this));
		} catch (e) {
			return Promise.reject(e);
		}
	}
	clone() {
		if (this.bodyUsed) throw new TE('Response: body has already been read');
		const c = new Response(undefined, {status: this.status, statusText: this.statusText, headers: this.headers});
		c.url = this.url;
		c.redirected = this.redirected;
		c.type = this.type;
		c[bodyOf] = this[bodyOf];
		return c;
	}
	static json(data, init) {
		const r = new Response(JSON.stringify(data), init);
		if (!r.headers.has('content-type')) r.headers.set('content-type', 'application/json');
		return r;
	}
}

class AbortSignal {
	constructor() {
		this.aborted = false;
		this.reason = undefined;
		this.onabort = null;
		this[listeners] = [];
	}
	addEventListener(type, fn) { if (type === 'abort' && typeof fn === 'function') this[listeners].push(fn); }
	removeEventListener(type, fn) {
		const l = this[listeners], i = l.indexOf(fn);
		if (type === 'abort' && i >= 0) l.splice(i, 1);
	}
	throwIfAborted() { if (this.aborted) throw this.reason; }
	static abort(reason) {
		const c = new AbortController();
		c.abort(reason);
		return c.signal;
	}
	// timeout(ms) is a signal fetch applies as its own timeout: it sets no
	// timer, so a run does not wait for it once the request is done.
	static timeout(ms) {
		const s = new AbortSignal();
		s[timeoutOf] = Number(ms);
		return s;
	}
}

class AbortController {
	constructor() { this.signal = new AbortSignal(); }
	abort(reason) {
		const s = this.signal;
		if (s.aborted) return;
		s.aborted = true;
		s.reason = reason === undefined ? namedError('AbortError', 'This operation was aborted') : reason;
		const ev = {type: 'abort', target: s};
		for (const fn of s[listeners].slice()) fn.call(s, ev);
		if (typeof s.onabort === 'function') s.onabort.call(s, ev);
	}
}

// fetch checks its arguments and hands the request to host.fetch, which
// returns the fetch's Promise: settled from Go, with the Response it builds
// (fetch.go, fetched) or a failure. Without init nothing else is made.
function fetch(input, init) {
	try {
		const url = typeof input === 'string' ? input : (input && typeof input.url === 'string' ? input.url : String(input));
		let method = 'GET', names, values, body, timeout, redirect = 'follow', signal;
		if (init !== undefined && init !== null) {
			method = init.method === undefined ? 'GET' : String(init.method).toUpperCase();
			const given = init.headers;
			const headers = given === undefined || given === null ? undefined : new Headers(given);
			body = toBytes(init.body, 'fetch body');
			if (body !== undefined && (method === 'GET' || method === 'HEAD')) throw new TE('fetch: a ' + method + ' request cannot have a body');
			if (headers !== undefined) {
				if (typeof body === 'string' && !headers.has('content-type')) headers.set('content-type', 'text/plain;charset=UTF-8');
				names = [];
				values = [];
				headers[store].forEach((v, k) => { names.push(k); values.push(v); });
			} else if (typeof body === 'string') {
				names = ['content-type'];
				values = ['text/plain;charset=UTF-8'];
			}
			signal = init.signal;
			timeout = init.timeout === undefined ? undefined : Number(init.timeout);
			if (signal !== undefined && signal !== null) {
				if (!(signal instanceof AbortSignal)) throw new TE('fetch: signal must be an AbortSignal');
				if (signal.aborted) return Promise.reject(signal.reason);
				if (signal[timeoutOf] !== undefined && (timeout === undefined || signal[timeoutOf] < timeout)) timeout = signal[timeoutOf];
			} else {
				signal = undefined;
			}
			if (timeout !== undefined && !(timeout >= 0)) throw new TE('fetch: timeout must be a number of milliseconds');
			redirect = init.redirect === undefined ? 'follow' : String(init.redirect);
			if (redirect !== 'follow' && redirect !== 'manual' && redirect !== 'error') {
				throw new TE('fetch: redirect must be "follow", "manual" or "error", not ' + JSON.stringify(redirect));
			}
		}
		// Made here, so that it locates the script's fetch call: a failure
		// comes back from the loop, where no script frame is on the stack.
		const failure = new TE('fetch failed');
		return host.fetch(method, url, names, values, body, timeout, redirect, failure, signal);
	} catch (e) {
		return Promise.reject(e);
	}
}

const define = (name, value) => Object.defineProperty(g, name, {value: value, writable: true, enumerable: false, configurable: true});
define('fetch', fetch);
define('Headers', Headers);
define('Response', Response);
define('AbortController', AbortController);
define('AbortSignal', AbortSignal);
// What host.fetch needs to build a Response, and a way to listen for a
// signal's abort.
return {Response: Response.prototype, Headers: Headers.prototype, bodyOf: bodyOf, fill: fill,
	listen: (signal, fn) => signal.addEventListener('abort', fn)};
})
