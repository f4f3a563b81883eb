/**
 * Bus conformance against a real Kafka broker (FLOWKIT_KAFKA_BROKERS). Skipped without one, unless
 * FLOWKIT_REQUIRE_REAL_SERVICES=1 (then it fails).
 */
import { describe } from 'node:test'
import { KafkaBus } from '../../src/adapters/kafka/index.ts'
import { kafkaBrokers, realSkip } from '../helpers/real.ts'
import { runAssignmentConformance } from './bus-assignment.suite.ts'
import { runBusConformance } from './bus.suite.ts'

const skip = realSkip('kafka')

describe('Kafka bus conformance (real broker)', { skip }, () => {
  runBusConformance(
    'Bus conformance: KafkaBus',
    async () => ({ bus: new KafkaBus({ brokers: kafkaBrokers() ?? [], clientId: 'flowkit-conformance' }) }),
    { timeoutMs: 20_000, quietMs: 500 },
  )
  // Rebalances (a member noticing one at its next heartbeat, cooperative ones in two rounds) take
  // seconds, more on a loaded machine.
  runAssignmentConformance(
    'Bus conformance, group membership: KafkaBus',
    async () => ({ bus: new KafkaBus({ brokers: kafkaBrokers() ?? [], clientId: 'flowkit-conformance' }) }),
    { timeoutMs: 60_000, cooperative: true },
  )
})
