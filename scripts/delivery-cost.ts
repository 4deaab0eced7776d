// CPU per delivery through Nucleon's QoS-granting wrapper of aedes' client
// delivery functions (src/mqtt/aedes/deliveries.ts), for a client with one
// wildcard subscription (a service account on `+/app/p/#`) and for one with
// three, so that the full match over all of them runs. aedes' own delivery
// functions are stubs here: only the wrapper is measured.
//
//   node --import tsx scripts/delivery-cost.ts [deliveries per round] [rounds]
import { grantHighestQos } from '../src/mqtt/aedes/deliveries.js';

type Deliver = (packet: { topic: string; qos: 0 | 1 | 2; brokerId?: string; brokerCounter?: number }, callback: () => void) => void;

interface StubClient {
  broker: object;
  subscriptions: Record<string, { qos: number }>;
  duplicates: Record<string, number>;
  deliver0: Deliver;
  deliverQoS: Deliver;
}

const [countText = '2000000', roundsText = '5'] = process.argv.slice(2);
const count = Number(countText);
const rounds = Number(roundsText);
const TOPIC = '352656100000001/app/p/data';

function clientWith(subscriptions: Record<string, { qos: number }>): StubClient {
  const done: Deliver = (_packet, callback) => callback();
  const client: StubClient = { broker: {}, subscriptions, duplicates: {}, deliver0: done, deliverQoS: done };
  grantHighestQos(client);
  return client;
}

function nsPerDelivery(client: StubClient): number {
  const callback = (): void => undefined;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; i++) client.deliverQoS({ topic: TOPIC, qos: (i & 1) as 0 | 1, brokerId: 'bench', brokerCounter: i }, callback);
  return Number(process.hrtime.bigint() - started) / count;
}

const one = clientWith({ '+/app/p/#': { qos: 1 } });
const three = clientWith({ '+/app/p/#': { qos: 1 }, '+/tel/p': { qos: 0 }, '$share/x/+/ota/p': { qos: 1 } });
for (let round = 1; round <= rounds; round++) {
  console.log(`round ${round}: one subscription ${nsPerDelivery(one).toFixed(1)} ns, three ${nsPerDelivery(three).toFixed(1)} ns per delivery`);
}
