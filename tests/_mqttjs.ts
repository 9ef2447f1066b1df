/**
 * npm:mqtt (MQTT.js) helpers shared by the tests that use the reference client.
 *
 * @module
 */
// Inline and exactly versioned, like every dependency here (see tests/imports_test.ts).
// deno-lint-ignore no-import-prefix
import mqtt from "npm:mqtt@5.16.0";

/** A message as a test checks it: payload as text. */
export interface Received {
  topic: string;
  payload: string;
  qos: number;
  retain: boolean;
}

/** Connects an MQTT 3.1.1 client that does not reconnect; resolves on CONNACK. */
export function connectMqtt(
  port: number,
  options: mqtt.IClientOptions = {},
): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    ...options,
  });
}

/** Collects every message the client receives from now on. */
export function collect(client: mqtt.MqttClient): Received[] {
  const messages: Received[] = [];
  client.on("message", (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain });
  });
  return messages;
}
