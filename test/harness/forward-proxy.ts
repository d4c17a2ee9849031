// A real forward HTTP proxy (Debian's tinyproxy) on loopback, for endpoints that reach
// the world only through an egress proxy. Its log records every request it relayed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForPort } from "./proc.ts";

export interface ForwardProxy {
  url: string;
  /** Request lines the proxy relayed ("GET http://127.0.0.1:…/v2/… HTTP/1.1"). */
  requests(): string[];
  stop(): Promise<void>;
}

export async function startForwardProxy(): Promise<ForwardProxy> {
  const dir = mkdtempSync(join(tmpdir(), "ferry-proxy-"));
  const port = await freePort();
  const logFile = join(dir, "tinyproxy.log");
  writeFileSync(
    join(dir, "tinyproxy.conf"),
    [`Port ${port}`, "Listen 127.0.0.1", "Timeout 60", `LogFile "${logFile}"`, "LogLevel Info", "MaxClients 50", "Allow 127.0.0.1", "DisableViaHeader Yes"].join("\n") + "\n",
  );
  const proc = Bun.spawn(["tinyproxy", "-d", "-c", join(dir, "tinyproxy.conf")], { stdout: "ignore", stderr: "pipe" });
  const kill = () => {
    try {
      process.kill(proc.pid, "SIGKILL");
    } catch {}
  };
  process.on("exit", kill);
  await waitForPort(port, { timeoutMs: 5_000 });
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => {
      let text = "";
      try {
        text = readFileSync(logFile, "utf8");
      } catch {}
      return [...text.matchAll(/Request \(file descriptor \d+\): (.+)$/gm)].map((m) => m[1]!.trim());
    },
    stop: async () => {
      proc.kill();
      await proc.exited;
      process.off("exit", kill);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
