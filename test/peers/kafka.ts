/**
 * A real Apache Kafka broker for end-to-end tests: the jars of ./kafka/pom.xml, fetched once from
 * Maven Central with the machine's `mvn` and cached under ~/.cache/periscope-peers/kafka-<version>
 * (PERISCOPE_PEERS_DIR), run with the machine's Java 17+ as one KRaft node (broker and controller
 * in one process) on free 127.0.0.1 ports, its storage in a temporary directory removed at stop.
 *
 *   const kafka = await startKafka()
 *   t.after(() => kafka.stop())
 *   await kafka.createTopic('orders')
 *   const producer = kafka.produce({ topic: 'orders', records: 100, clientId: 'test-producer' })
 *   ... producer.pid is the client process; await producer.done ...
 *
 * The clients are Kafka's own tools from the same jars (ProducerPerformance, ConsoleConsumer), each
 * a JVM of its own whose pid the test knows. Readiness is a Metadata request answered with this
 * broker in it (a KRaft broker is listed only once the controller has unfenced it).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { freePort } from './otelcol.ts'
import { pollUntil } from './poll.ts'

export const KAFKA_VERSION = '4.1.1'
const POM = fileURLToPath(new URL('./kafka/pom.xml', import.meta.url))
const exec = promisify(execFile)

function cacheDir(): string {
  return join(process.env.PERISCOPE_PEERS_DIR ?? join(homedir(), '.cache/periscope-peers'), `kafka-${KAFKA_VERSION}`)
}

function java(): string {
  return process.env.JAVA_HOME === undefined ? 'java' : join(process.env.JAVA_HOME, 'bin/java')
}

let jars: Promise<string> | undefined

/**
 * The directory of the broker's and tools' jars, fetched with `mvn` on a cold cache (about a
 * minute, 55 MB). A fetch that fails leaves nothing behind: the jars land in a scratch directory
 * renamed into place only when complete.
 */
export function kafkaJars(): Promise<string> {
  jars ??= (async () => {
    const dir = cacheDir()
    const libs = join(dir, 'libs')
    if (existsSync(libs)) return libs
    await mkdir(dir, { recursive: true })
    const scratch = await mkdtemp(join(dir, 'fetch-'))
    process.stderr.write(`fetching Kafka ${KAFKA_VERSION} jars from Maven Central into ${libs} (once; about a minute)\n`)
    try {
      await exec('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${join(scratch, 'libs')}`],
        { maxBuffer: 64 * 1024 * 1024, timeout: 20 * 60_000 })
      await rename(join(scratch, 'libs'), libs)
    } catch (error) {
      const { message, stdout } = error as Error & { stdout?: string }
      throw new Error(`fetching the Kafka jars with mvn failed (${POM}); Maven and Java 17 come from scripts/setup.sh --test: ${message}\n${stdout?.slice(-4000) ?? ''}`)
    } finally {
      await rm(scratch, { recursive: true, force: true })
    }
    return libs
  })()
  jars.catch(() => (jars = undefined))
  return jars
}

/** One of Kafka's command-line tools, running as a JVM of its own. */
export interface KafkaClient {
  /** The JVM's pid: the process whose connections carry this client's requests. */
  readonly pid: number
  /** Resolves when the tool exits (never rejects: check `code`). */
  readonly done: Promise<{ code: number | null; stdout: string; stderr: string }>
}

export interface ProduceOptions {
  topic: string
  records: number
  /** Bytes of each record's value; default 50. */
  recordSize?: number
  /** The producer's client.id (sent in every request header). */
  clientId: string
  /** Other producer properties, e.g. { acks: '1', 'linger.ms': '5' }. */
  properties?: Record<string, string>
}

export interface ConsumeOptions {
  topic: string
  /** The tool exits after this many records (or after `timeoutMs` without one). */
  maxMessages: number
  clientId: string
  /** A consumer group; without it the tool reads partition `partition` from `offset` by assignment. */
  group?: string
  partition?: number
  /** 'earliest' (default), 'latest', or an offset (with `partition`). */
  offset?: number | 'earliest' | 'latest'
  /** Exit after this long without a record; default 20 s. */
  timeoutMs?: number
  properties?: Record<string, string>
}

export interface Kafka {
  /** host:port clients bootstrap from: the broker's client listener, or the advertised proxy. */
  readonly bootstrap: string
  readonly port: number
  /** The controller listener's port (the broker's own connections to its controller use it). */
  readonly controllerPort: number
  /** The broker's pid. */
  readonly pid: number
  readonly dir: string
  output(): string
  createTopic(name: string, options?: { partitions?: number; config?: Record<string, string> }): Promise<void>
  produce(options: ProduceOptions): KafkaClient
  consume(options: ConsumeOptions): KafkaClient
  /** Stops the clients still running and the broker (SIGTERM, SIGKILL after 20 s), removes the directory. */
  stop(): Promise<void>
}

/** JVM flags for the short-lived tools: the C1 compiler only starts them about twice as fast. */
const toolJvm = ['-Xmx256m', '-XX:+UseSerialGC', '-XX:TieredStopAtLevel=1', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn']

export async function startKafka(options: {
  readyTimeoutMs?: number
  /** The port clients are told to connect to after bootstrap (a recording proxy's); default the broker's own. */
  advertisedPort?: number
} = {}): Promise<Kafka> {
  const libs = await kafkaJars()
  const classpath = join(libs, '*')
  const dir = await mkdtemp(join(tmpdir(), 'periscope-kafka-'))
  const port = await freePort()
  const controllerPort = await freePort()
  const properties = [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${options.advertisedPort ?? port}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${join(dir, 'data')}`,
    'num.partitions=1',
    // one node: the internal topics cannot have more replicas than that
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'share.coordinator.state.topic.replication.factor=1',
    'share.coordinator.state.topic.min.isr=1',
    // tests name their topics; a typo must be an error, not a new topic
    'auto.create.topics.enable=false',
    'group.initial.rebalance.delay.ms=0',
  ].join('\n') + '\n'
  const config = join(dir, 'server.properties')
  await writeFile(config, properties)
  const clusterId = 'periscopetestAAAAAAAAA' // any 22-character base64 uuid
  try {
    await exec(java(), [...toolJvm, '-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', config], { timeout: 120_000 })
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    const { message, stdout } = error as Error & { stdout?: string }
    throw new Error(`formatting the Kafka storage failed (is Java 17+ installed? scripts/setup.sh --test): ${message}\n${stdout ?? ''}`)
  }

  let output = ''
  const broker: ChildProcess = spawn(java(), ['-Xmx512m', '-Xms128m', '-XX:+UseSerialGC', '-Dorg.slf4j.simpleLogger.defaultLogLevel=warn', '-cp', classpath, 'kafka.Kafka', config],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  broker.stdout!.on('data', (d: Buffer) => (output += d.toString()))
  broker.stderr!.on('data', (d: Buffer) => (output += d.toString()))
  const brokerExited = new Promise<void>((resolve) => broker.once('exit', () => resolve()))
  const clients = new Set<ChildProcess>()

  const stop = async (): Promise<void> => {
    for (const client of clients) client.kill('SIGKILL')
    if (broker.exitCode === null && broker.signalCode === null) {
      broker.kill('SIGTERM')
      const timer = setTimeout(() => broker.kill('SIGKILL'), 20_000)
      await brokerExited
      clearTimeout(timer)
    }
    await rm(dir, { recursive: true, force: true })
  }

  const tool = (mainClass: string, args: string[]): KafkaClient => {
    const child = spawn(java(), [...toolJvm, '-cp', classpath, mainClass, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    clients.add(child)
    let stdout = ''
    let stderr = ''
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => {
      clients.delete(child)
      resolve({ code, stdout, stderr })
    }))
    if (child.pid === undefined) throw new Error(`could not start ${java()} for ${mainClass}`)
    return { pid: child.pid, done }
  }

  try {
    await pollUntil(() => brokerListed(port), {
      what: `the Kafka broker on 127.0.0.1:${port} to list itself in a Metadata response`,
      timeoutMs: options.readyTimeoutMs ?? 60_000,
      intervalMs: 100,
      failed: () => (broker.exitCode !== null || broker.signalCode !== null ? 'the Kafka broker exited during start-up' : undefined),
      details: () => output.slice(-4000),
    })
  } catch (error) {
    await stop()
    throw error
  }

  const bootstrap = `127.0.0.1:${options.advertisedPort ?? port}`
  return {
    bootstrap,
    port,
    controllerPort,
    pid: broker.pid!,
    dir,
    output: () => output,
    async createTopic(name, topicOptions = {}) {
      const args = ['--bootstrap-server', bootstrap, '--create', '--topic', name, '--partitions', String(topicOptions.partitions ?? 1), '--replication-factor', '1']
      for (const [key, value] of Object.entries(topicOptions.config ?? {})) args.push('--config', `${key}=${value}`)
      const { code, stdout, stderr } = await tool('org.apache.kafka.tools.TopicCommand', args).done
      if (code !== 0) throw new Error(`creating topic ${name} failed (exit ${code}):\n${stdout}${stderr}`)
    },
    produce(produceOptions) {
      const props = { 'bootstrap.servers': bootstrap, 'client.id': produceOptions.clientId, ...produceOptions.properties }
      return tool('org.apache.kafka.tools.ProducerPerformance', [
        '--topic', produceOptions.topic, '--num-records', String(produceOptions.records), '--record-size', String(produceOptions.recordSize ?? 50),
        '--throughput', '-1', '--producer-props', ...Object.entries(props).map(([key, value]) => `${key}=${value}`),
      ])
    },
    consume(consumeOptions) {
      const args = ['--bootstrap-server', bootstrap, '--topic', consumeOptions.topic, '--max-messages', String(consumeOptions.maxMessages),
        '--timeout-ms', String(consumeOptions.timeoutMs ?? 20_000), '--consumer-property', `client.id=${consumeOptions.clientId}`]
      if (consumeOptions.group !== undefined) args.push('--group', consumeOptions.group)
      if (consumeOptions.partition !== undefined) args.push('--partition', String(consumeOptions.partition))
      const offset = consumeOptions.offset ?? 'earliest'
      if (consumeOptions.partition !== undefined) args.push('--offset', String(offset))
      else if (offset === 'earliest') args.push('--from-beginning')
      for (const [key, value] of Object.entries(consumeOptions.properties ?? {})) args.push('--consumer-property', `${key}=${value}`)
      return tool('org.apache.kafka.tools.consumer.ConsoleConsumer', args)
    },
    stop,
  }
}

/**
 * Whether the broker answers a Metadata v1 request (all topics) with at least one broker: a
 * KRaft broker lists itself once its controller has registered and unfenced it, when it can take
 * requests for topics. The request is built here (a dozen bytes) to spare a JVM per poll.
 */
function brokerListed(port: number): Promise<boolean> {
  const clientId = Buffer.from('periscope-ready')
  const request = Buffer.alloc(4 + 2 + 2 + 4 + 2 + clientId.length + 4)
  let at = request.writeInt32BE(request.length - 4, 0)
  at = request.writeInt16BE(3, at) // Metadata
  at = request.writeInt16BE(1, at) // v1: a null topic array asks for every topic
  at = request.writeInt32BE(1, at) // correlation id
  at = request.writeInt16BE(clientId.length, at)
  at += clientId.copy(request, at)
  request.writeInt32BE(-1, at)
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    let received = Buffer.alloc(0)
    const finish = (listed: boolean): void => {
      socket.destroy()
      resolve(listed)
    }
    socket.setTimeout(5_000, () => finish(false))
    socket.once('error', () => finish(false))
    socket.once('connect', () => socket.write(request))
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      // size, correlation id, then the brokers array's length
      if (received.length >= 12) finish(received.readInt32BE(8) > 0)
    })
  })
}

