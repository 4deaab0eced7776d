// Configurable ACL rules (README "ACL rules"), pure: who and what they apply
// to, %u and %c, order and deny, and the guard that no rule widens the
// built-in rules for device data topics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from '../../src/config/index.js';
import { decidePublish, maySubscribe, type Principal } from '../../src/mqtt/acl.js';
import { AclRules, type AclRule } from '../../src/mqtt/acl-rules.js';

const device = (uid: string) => ({ principal: { kind: 'device', uid } as Principal, clientId: uid });
const service = (name: string) => ({ principal: { kind: 'service', name } as Principal, clientId: `svc:${name}` });
const anonymous = (clientId: string) => ({ principal: { kind: 'anonymous', clientId } as Principal, clientId });

const rule = (who: AclRule['who'], action: AclRule['action'], topic: string, effect: AclRule['effect'] = 'allow'): AclRule => ({ who, action, effect, topic });

test('no rules: only the built-in ones (a device its own data, a service account the server topics)', () => {
  const none = new AclRules([]);
  assert.equal(decidePublish(device('d1'), 'd1/tel/p', none).kind, 'ingest');
  assert.deepEqual(decidePublish(device('d1'), 'd1/status', none), { kind: 'deny', reason: 'too_short' });
  assert.deepEqual(decidePublish(device('d1'), 'fleet/config/x', none), { kind: 'deny', reason: 'unknown_kind' });
  assert.equal(decidePublish(service('backend'), 'd1/app/s/x', none).kind, 'route');
  assert.deepEqual(decidePublish(service('backend'), 'ops/alerts', none), { kind: 'deny', reason: 'no_rule' });
  assert.deepEqual(decidePublish(anonymous('tester'), 'TopicA', none), { kind: 'deny', reason: 'no_rule' });
  assert.equal(maySubscribe(device('d1'), 'd1/app/s/#', none), true);
  assert.equal(maySubscribe(device('d1'), 'fleet/#', none), false);
  assert.equal(maySubscribe(anonymous('tester'), '#', none), false);
});

test('each kind of "who", and both actions', () => {
  const rules = new AclRules([
    rule('devices', 'publish', '+/status'),
    rule('device:d2', 'subscribe', 'fleet/d2-only'),
    rule('services', 'publish', 'ops/alerts'),
    rule('service:grafana', 'subscribe', 'ops/#'),
    rule('anonymous', 'both', 'sandbox/#'),
    rule('anyone', 'subscribe', 'fleet/config'),
  ]);
  assert.equal(decidePublish(device('d1'), 'd1/status', rules).kind, 'route');
  assert.equal(decidePublish(service('backend'), 'd1/status', rules).kind, 'deny');
  assert.equal(maySubscribe(device('d2'), 'fleet/d2-only', rules), true);
  assert.equal(maySubscribe(device('d1'), 'fleet/d2-only', rules), false);
  assert.equal(decidePublish(service('backend'), 'ops/alerts', rules).kind, 'route');
  assert.equal(maySubscribe(service('grafana'), 'ops/alerts', rules), true);
  assert.equal(maySubscribe(service('backend'), 'ops/+', rules), true, 'a service account subscribes anywhere but $ by the built-in rules');
  assert.equal(maySubscribe(anonymous('x'), 'ops/alerts', rules), false);
  assert.equal(decidePublish(anonymous('x'), 'sandbox/a/b', rules).kind, 'route');
  assert.equal(maySubscribe(anonymous('x'), 'sandbox/+', rules), true);
  assert.equal(decidePublish(anonymous('x'), 'fleet/config', rules).kind, 'deny', 'subscribe-only rule');
  for (const subject of [device('d9'), service('s'), anonymous('a')]) assert.equal(maySubscribe(subject, 'fleet/config', rules), true);
});

test('%u and %c: the uid or service name, and the client id, as whole levels', () => {
  const rules = new AclRules([rule('anyone', 'both', 'home/%u/#'), rule('anyone', 'publish', 'clients/%c')]);
  assert.equal(decidePublish(device('d1'), 'home/d1/kitchen', rules).kind, 'route');
  assert.equal(decidePublish(device('d1'), 'home/d2/kitchen', rules).kind, 'deny');
  assert.equal(decidePublish(service('backend'), 'home/backend', rules).kind, 'route', '# matches its parent level too');
  assert.equal(decidePublish(anonymous('tester'), 'home/tester/x', rules).kind, 'deny', 'an anonymous client has no %u');
  assert.equal(decidePublish(anonymous('tester'), 'clients/tester', rules).kind, 'route');
  assert.equal(decidePublish(service('backend'), 'clients/svc:backend', rules).kind, 'route');
  assert.equal(decidePublish(service('backend'), 'clients/other', rules).kind, 'deny');
  assert.equal(maySubscribe(device('d1'), 'home/d1/+', rules), true);
  assert.equal(maySubscribe(device('d1'), 'home/+/kitchen', rules), false, "a wildcard where the rule names the uid would reach others' topics");
});

test('order and deny: the first matching rule decides', () => {
  const rules = new AclRules([rule('anyone', 'publish', 'fleet/secret', 'deny'), rule('anyone', 'both', 'fleet/#'), rule('anyone', 'subscribe', 'fleet/#', 'deny')]);
  assert.deepEqual(decidePublish(device('d1'), 'fleet/secret', rules), { kind: 'deny', reason: 'denied_by_rule' });
  assert.equal(decidePublish(device('d1'), 'fleet/open', rules).kind, 'route');
  assert.equal(maySubscribe(device('d1'), 'fleet/#', rules), true, 'the allow comes before the deny');
  const reversed = new AclRules([rule('anyone', 'subscribe', 'fleet/#', 'deny'), rule('anyone', 'both', 'fleet/#')]);
  assert.equal(maySubscribe(device('d1'), 'fleet/x', reversed), false);
});

test('no rule widens the built-in rules for device data topics: nobody publishes as another uid', () => {
  const open = new AclRules([rule('anyone', 'both', '#')]);
  for (const topic of ['d2/app/p/x', 'd2/tel/p', 'd2/ota/p', 'd2/app/p', 'd2/tel', 'd2/app', 'x/app/s/y']) {
    assert.equal(decidePublish(device('d1'), topic, open).kind, 'deny', `a device to ${topic}`);
    assert.equal(decidePublish(anonymous('d1'), topic, open).kind, 'deny', `an anonymous client to ${topic}`);
  }
  assert.equal(decidePublish(service('backend'), 'd2/app/p/x', open).kind, 'deny', 'a service account cannot publish device data either');
  assert.equal(decidePublish(device('d1'), 'd1/app/p/x', open).kind, 'ingest');
  assert.deepEqual(decidePublish(device('d1'), '$SYS/broker/x', open), { kind: 'deny', reason: 'reserved' });
});

test('$ topics: rules starting with a wildcard do not match them [MQTT-4.7.2-1]', () => {
  const rules = new AclRules([rule('anyone', 'both', '#'), rule('anyone', 'both', '+/x')]);
  assert.equal(decidePublish(anonymous('a'), '$TopicA/B', rules).kind, 'deny');
  assert.equal(maySubscribe(anonymous('a'), '$TopicA/#', rules), false);
  assert.equal(decidePublish(anonymous('a'), '$TopicA/B', new AclRules([rule('anyone', 'publish', '$TopicA/#')])).kind, 'route');
});

test('a rule that cannot be used is refused at load, naming the rule and the problem', () => {
  const bad = [
    [{ who: 'everyone', action: 'both', topic: 'x' }, /acl\.rules\.0.*who must be/],
    [{ who: 'anyone', action: 'read', topic: 'x' }, /acl\.rules\.0\.action.*expected "publish"/],
    [{ who: 'anyone', action: 'both', topic: 'a/#/b' }, /acl\.rules\.0.*'#' must be a whole level and the last one/],
    [{ who: 'anyone', action: 'both', topic: 'a/%u-x' }, /acl\.rules\.0.*a substitution must be a whole level/],
    [{ who: 'device:not a uid', action: 'both', topic: 'x' }, /acl\.rules\.0.*who must be/],
  ] as const;
  for (const [input, message] of bad) {
    assert.throws(() => validateConfig({ acl: { rules: [input] } }), (error: Error) => message.test(error.message), JSON.stringify(input));
  }
  assert.equal(validateConfig({ acl: { rules: [{ who: 'anyone', action: 'both', topic: 'x/%u/#' }] } }).acl.rules[0]?.effect, 'allow');
});
