import { Counter, Gauge, type Registry } from 'prom-client';

/** The admin endpoint's own metrics, in the instance's registry (README "Metrics"). */
export class AdminMetrics {
  readonly connections: Counter<'result'>;
  readonly authFailures: Counter<'reason'>;
  readonly messages: Counter<'direction' | 'kind'>;
  readonly errors: Counter<'code'>;
  readonly slowClients: Counter;
  readonly uploadBytes: Counter;

  constructor(registry: Registry, gauges: { clients: () => number; pending: () => number; devicesOnline: () => number; devicesKnown: () => number }) {
    const registers = [registry];
    this.connections = new Counter({
      name: 'nucleon_admin_connections_total',
      help: 'Admin WebSocket connection attempts by result (accepted, unauthorized, rate_limited, too_many_clients, bad_request, forbidden)',
      labelNames: ['result'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'nucleon_admin_auth_failures_total',
      help: 'Failed admin authentications by reason (missing, invalid, rate_limited, login_timeout)',
      labelNames: ['reason'],
      registers,
    });
    this.messages = new Counter({
      name: 'nucleon_admin_messages_total',
      help: 'Admin messages by direction (in, out) and kind (command name, event name, error)',
      labelNames: ['direction', 'kind'],
      registers,
    });
    this.errors = new Counter({ name: 'nucleon_admin_errors_total', help: 'Admin error replies by code', labelNames: ['code'], registers });
    this.slowClients = new Counter({
      name: 'nucleon_admin_slow_clients_total',
      help: 'Admin clients disconnected because their send buffer was full',
      registers,
    });
    this.uploadBytes = new Counter({ name: 'nucleon_admin_upload_bytes_total', help: 'Firmware bytes received over the admin socket', registers });
    gauge(registry, 'nucleon_admin_clients', 'Authenticated admin connections open now', gauges.clients);
    gauge(registry, 'nucleon_admin_pending_requests', 'Admin requests waiting for another runner', gauges.pending);
    gauge(registry, 'nucleon_devices_online', 'Devices connected now, as the admin fleet view sees them', gauges.devicesOnline);
    gauge(registry, 'nucleon_devices_known', 'Devices the admin fleet view has ever seen', gauges.devicesKnown);
  }
}

function gauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}
