/**
 * The authkey handshake: CPython 3.12's mutual HMAC challenge, so our
 * Listener and Client authenticate with Python's and with each other.
 *
 * Each side proves it knows the key by answering the other's challenge:
 *   challenger:  "#CHALLENGE#" + "{sha256}" + 40 random bytes
 *   answerer:    "{sha256}" + HMAC-SHA256(key, everything after "#CHALLENGE#")
 *   challenger:  "#WELCOME#" if the digest is right, else "#FAILURE#" (and hangs up)
 * The listener challenges first and then answers the client's challenge;
 * the client does the reverse. Every message is one frame (framing.ts).
 *
 * Guards, since the peer is unknown until this succeeds: frames are capped
 * at 256 bytes (Python's own limit for these messages), the whole exchange
 * has a deadline, and digests are compared in constant time. A 16- or
 * 20-byte message is the legacy HMAC-MD5 protocol of Python 3.11 and older,
 * which is refused: MD5 is not a MAC to rely on.
 */
import { crypto } from '../builtins.js';
import { describe } from '../describe.js';
import { AuthenticationError, EOFError, ValueError } from '../errors.js';
import { MAX_MESSAGE } from './framing.js';
import { whenReady } from './ready.js';
import type { SocketTransport } from './socket-transport.js';
import { EOF } from './transport.js';

const CHALLENGE = Buffer.from('#CHALLENGE#');
const WELCOME = Buffer.from('#WELCOME#');
const FAILURE = Buffer.from('#FAILURE#');
/** Random bytes in a challenge (as Python's; more than the legacy 20). */
const NONCE_BYTES = 40;
/** The largest handshake message accepted (as Python's `recv_bytes(256)`). */
const HANDSHAKE_FRAME_CAP = 256;
/** Lengths that mean the legacy MD5 protocol (a 20-byte challenge, a 16-byte digest). */
const LEGACY_LENGTHS = new Set([16, 20]);
/** Digests a Python peer may name, and Node's names for them (MD5 is refused). */
const DIGESTS: ReadonlyMap<string, string> = new Map([
  ['sha256', 'sha256'],
  ['sha384', 'sha384'],
  ['sha3_256', 'sha3-256'],
  ['sha3_384', 'sha3-384'],
]);
/** The digest our challenges name. */
const OUR_DIGEST = 'sha256';
const LEGACY_HINT =
  'the legacy HMAC-MD5 handshake of Python 3.11 and older, which multiprocessing-ts refuses; use Python 3.12 or newer on that side';

/** An authkey as bytes, checked: a non-empty string (UTF-8) or Uint8Array. */
export function authkeyBytes(authkey: unknown, where: string): Buffer | null {
  if (authkey === undefined || authkey === null) return null;
  let bytes: Buffer;
  if (typeof authkey === 'string') bytes = Buffer.from(authkey, 'utf8');
  else if (authkey instanceof Uint8Array) bytes = Buffer.from(authkey);
  else {
    throw new ValueError(`${where} authkey must be a string or a Uint8Array, not ${describe(authkey)}`);
  }
  if (bytes.length === 0) {
    throw new ValueError(`${where} authkey is empty, which authenticates nothing; give a non-empty key, or omit it for no authentication`);
  }
  return bytes;
}

/** The listener's side: challenge the client, then answer its challenge. */
export async function authenticateClient(transport: SocketTransport, key: Buffer, timeoutMs: number): Promise<void> {
  await guarded(transport, timeoutMs, async (receive) => {
    await deliverChallenge(transport, key, receive);
    await answerChallenge(transport, key, receive);
  });
}

/** The client's side: answer the listener's challenge, then challenge it. */
export async function authenticateListener(transport: SocketTransport, key: Buffer, timeoutMs: number): Promise<void> {
  await guarded(transport, timeoutMs, async (receive) => {
    await answerChallenge(transport, key, receive);
    await deliverChallenge(transport, key, receive);
  });
}

type Receive = () => Promise<Buffer>;

/**
 * Runs an exchange under the handshake's guards; any failure ends the
 * connection at once and is an AuthenticationError, but for a hang-up
 * before the verdict, an EOFError.
 */
async function guarded(transport: SocketTransport, timeoutMs: number, exchange: (receive: Receive) => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  transport.maxFrame = HANDSHAKE_FRAME_CAP;
  const receive: Receive = async () => {
    for (;;) {
      let message;
      try {
        message = transport.take();
      } catch (err) {
        throw new AuthenticationError(`handshake: the peer sent ${(err as Error).message} (handshake messages are small)`, {
          cause: err,
        });
      }
      // No verdict came: the peer died, restarted or dropped this connection; a wrong key gets a verdict first.
      if (message === EOF) throw new EOFError('handshake: the peer hung up before the handshake was done (it exited, restarted, or dropped this connection)');
      if (message !== null) return message as Buffer;
      const left = deadline - Date.now();
      if (left <= 0 || !(await whenReady(transport, left))) {
        throw new AuthenticationError(`handshake: the peer did not answer within ${timeoutMs} ms (does it use an authkey?)`);
      }
    }
  };
  try {
    await exchange(receive);
  } catch (err) {
    transport.destroy();
    if (err instanceof AuthenticationError || err instanceof EOFError) throw err;
    throw new AuthenticationError(`handshake failed: ${(err as Error).message}`, { cause: err });
  }
  transport.maxFrame = MAX_MESSAGE;
}

async function deliverChallenge(transport: SocketTransport, key: Buffer, receive: Receive): Promise<void> {
  const message = Buffer.concat([Buffer.from(`{${OUR_DIGEST}}`), crypto().randomBytes(NONCE_BYTES)]);
  await transport.send(Buffer.concat([CHALLENGE, message]));
  const response = await receive();
  const verdict = verify(key, message, response);
  if (verdict !== null) {
    await transport.send(FAILURE).catch(() => {});
    throw new AuthenticationError(verdict);
  }
  await transport.send(WELCOME);
}

/** Why `response` does not prove the key for `message`, or null when it does. */
function verify(key: Buffer, message: Buffer, response: Buffer): string | null {
  if (LEGACY_LENGTHS.has(response.length)) return `the peer answered with ${LEGACY_HINT}`;
  const parsed = digestPrefix(response);
  if (!parsed) return 'the peer answered the challenge with no supported {digest} prefix (a wrong protocol?)';
  const expected = crypto().createHmac(parsed.node, key).update(message).digest();
  const got = response.subarray(parsed.prefixLength);
  if (got.length !== expected.length || !crypto().timingSafeEqual(got, expected)) {
    return 'digest received was wrong: the client does not have this listener\'s authkey';
  }
  return null;
}

async function answerChallenge(transport: SocketTransport, key: Buffer, receive: Receive): Promise<void> {
  const challenge = await receive();
  if (!challenge.subarray(0, CHALLENGE.length).equals(CHALLENGE)) {
    throw new AuthenticationError('handshake: expected a #CHALLENGE# message from the peer (does it use an authkey?)');
  }
  const message = challenge.subarray(CHALLENGE.length);
  if (message.length === 20) throw new AuthenticationError(`the peer challenged with ${LEGACY_HINT}`);
  if (message.length < 20) throw new AuthenticationError(`handshake: a challenge of ${message.length} bytes is too short`);
  const parsed = digestPrefix(message);
  if (!parsed) throw new AuthenticationError('handshake: the challenge names no supported {digest} (sha256, sha384, sha3_256, sha3_384)');
  const digest = crypto().createHmac(parsed.node, key).update(message).digest();
  await transport.send(Buffer.concat([Buffer.from(`{${parsed.name}}`), digest]));
  const verdict = await receive();
  if (!verdict.equals(WELCOME)) {
    throw new AuthenticationError('digest sent was rejected: the peer has a different authkey');
  }
}

/** The `{name}` a handshake message starts with, if it names a digest we accept. */
function digestPrefix(message: Buffer): { name: string; node: string; prefixLength: number } | null {
  if (message[0] !== 0x7b /* { */) return null;
  const close = message.indexOf(0x7d /* } */, 1);
  if (close < 0 || close > 12) return null;
  const name = message.subarray(1, close).toString('latin1');
  const node = DIGESTS.get(name);
  return node ? { name, node, prefixLength: close + 1 } : null;
}
