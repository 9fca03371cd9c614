// An MCP client that no one here wrote: the official TypeScript SDK.
// usage: node mcp_client.mjs http URL TOKEN
//        node mcp_client.mjs stdio COMMAND ARG...
// It lists the tools and calls the read tool "status", then prints
// {"tools":[{name, annotations}], "status": <the call's result>} as JSON.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [mode, ...rest] = process.argv.slice(2);
const transport = mode === "http"
  ? new StreamableHTTPClientTransport(new URL(rest[0]), { requestInit: { headers: { Authorization: "Bearer " + rest[1] } } })
  : new StdioClientTransport({ command: rest[0], args: rest.slice(1), stderr: "inherit" });
const client = new Client({ name: "ts-sdk-check", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
const status = await client.callTool({ name: "status", arguments: {} });
console.log(JSON.stringify({ tools: tools.tools.map((t) => ({ name: t.name, annotations: t.annotations })), status }));
await client.close();
