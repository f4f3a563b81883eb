// Node helpers for scripts/services.sh (run with the project's Node 24, which
// strips the types): free ports, and readiness checks that make a real request.
//
//   node scripts/services.ts ports <count>
//   node scripts/services.ts port-free <port>
//   node scripts/services.ts wait-kafka <host:port> <deadline-seconds> [pid]
//   node scripts/services.ts wait-mongo <mongodb-url> <deadline-seconds> [pid]
//
// Exit codes: 0 ready, 1 deadline passed, 2 usage error, 3 the watched process exited.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const EXIT_TIMEOUT = 1;
const EXIT_USAGE = 2;
const EXIT_DIED = 3;

// Below Linux's ephemeral range (32768-60999), so outgoing connections do not take them.
const PORT_MIN = 20000;
const PORT_MAX = 32000;

function fail(code: number, message: string): never {
  process.stderr.write(`services: ${message}\n`);
  process.exit(code);
}

function errorText(error: unknown): string {
  if (error instanceof Error) {
    const cause =
      error.cause instanceof Error && error.cause.message !== error.message ? ` (${error.cause.message})` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

async function freePorts(count: number): Promise<number[]> {
  const chosen: number[] = [];
  for (let attempt = 0; chosen.length < count && attempt < 500; attempt++) {
    const port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN));
    if (!chosen.includes(port) && (await canListen(port))) chosen.push(port);
  }
  if (chosen.length < count) fail(EXIT_TIMEOUT, `could not find ${count} free ports`);
  return chosen;
}

// A zombie (exited, not yet reaped by its new parent) counts as dead.
function alive(pid: number | undefined): boolean {
  if (pid === undefined) return true;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    // no /proc (macOS) or no such process
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(
  what: string,
  deadlineSeconds: number,
  pid: number | undefined,
  probe: () => Promise<string>,
): Promise<void> {
  const started = Date.now();
  const deadline = started + deadlineSeconds * 1000;
  let lastError = 'no attempt made';
  while (Date.now() < deadline) {
    if (!alive(pid)) fail(EXIT_DIED, `${what}: process ${pid} exited before it was ready`);
    try {
      const detail = await probe();
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(`${what} ready after ${seconds}s (${detail})\n`);
      return;
    } catch (error) {
      lastError = errorText(error);
    }
    await sleep(500);
  }
  fail(EXIT_TIMEOUT, `${what}: not ready after ${deadlineSeconds}s; last error: ${lastError}`);
}

// The clients are imported on first use so that `ports` / `port-free` start fast.
async function probeKafka(broker: string): Promise<string> {
  const { Admin } = await import('@platformatic/kafka');
  const admin = new Admin({
    clientId: 'flowkit-services-probe',
    bootstrapBrokers: [broker],
    connectTimeout: 2000,
    timeout: 5000,
    retries: 0,
  });
  try {
    const metadata = await admin.metadata({ forceUpdate: true });
    if (metadata.brokers.size === 0) throw new Error('metadata lists no broker');
    if (metadata.controllerId < 0) throw new Error('metadata names no controller');
    const topics = await admin.listTopics({ includeInternals: true });
    return `cluster ${metadata.id}, ${metadata.brokers.size} broker(s), ${topics.length} topic(s)`;
  } finally {
    await admin.close().catch(() => undefined);
  }
}

async function probeMongo(url: string): Promise<string> {
  const { MongoClient } = await import('mongodb');
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: 2000,
    connectTimeoutMS: 2000,
    socketTimeoutMS: 5000,
  });
  try {
    await client.connect();
    const admin = client.db('admin');
    await admin.command({ ping: 1 });
    const info = await admin.command({ buildInfo: 1 });
    return `ping ok, reports version ${String(info.version)}`;
  } finally {
    await client.close().catch(() => undefined);
  }
}

function parseNumber(text: string | undefined, name: string): number {
  const value = Number(text);
  if (text === undefined || !Number.isInteger(value) || value <= 0) fail(EXIT_USAGE, `bad ${name}: ${text ?? '(missing)'}`);
  return value;
}

async function main(argv: string[]): Promise<void> {
  const [command, target, deadline, pidText] = argv;
  const pid = pidText === undefined ? undefined : parseNumber(pidText, 'pid');
  switch (command) {
    case 'ports': {
      const ports = await freePorts(parseNumber(target, 'count'));
      process.stdout.write(`${ports.join(' ')}\n`);
      return;
    }
    case 'port-free': {
      const port = parseNumber(target, 'port');
      if (!(await canListen(port))) fail(EXIT_TIMEOUT, `port ${port} on 127.0.0.1 is in use`);
      return;
    }
    case 'wait-kafka': {
      if (target === undefined) fail(EXIT_USAGE, 'wait-kafka needs host:port');
      await waitUntil(`kafka at ${target}`, parseNumber(deadline, 'deadline'), pid, () => probeKafka(target));
      return;
    }
    case 'wait-mongo': {
      if (target === undefined) fail(EXIT_USAGE, 'wait-mongo needs a mongodb:// url');
      const where = new URL(target).host;
      await waitUntil(`mongo at ${where}`, parseNumber(deadline, 'deadline'), pid, () => probeMongo(target));
      return;
    }
    default:
      fail(EXIT_USAGE, 'usage: services.ts ports <n> | port-free <port> | wait-kafka <host:port> <secs> [pid] | wait-mongo <url> <secs> [pid]');
  }
}

await main(process.argv.slice(2));
// Client sockets may linger briefly after close; the answer is already printed.
process.exit(0);
