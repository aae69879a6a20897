"""The MCP peer for the RPC section: a minimal MCP server over stdio with one tool.

    python bench/peers/mcp_server.py

Built with the MCP python SDK's own server class (``mcp.server.mcpserver.MCPServer``, FastMCP's
successor in mcp 2), one tool, ``echo(n) -> n``, served on stdin/stdout. ``bench/suite.py``
drives it with the SDK's client (``stdio_client`` + ``ClientSession``): ``tools/call`` of
``echo`` and ``ping``, sequentially and many in flight, the same number of calls as the stdio
echo loop and the harness's services get; and spawn to the answer of ``initialize``.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

app = MCPServer("bench-echo")


@app.tool()
def echo(n: int) -> int:
    """Return n."""
    return n


if __name__ == "__main__":
    app.run("stdio")
