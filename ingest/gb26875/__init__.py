"""GB/T 26875.3-2011 (城市消防远程监控系统 第3部分：报警传输网络通信协议): frames and objects.

Pure computation, no I/O: `frame` (one frame, its checksum and the centre's answers), `framer`
(splitting a TCP byte stream into frames), `objects` (the application data unit's typed objects),
`codes` (the standard's code tables with their Chinese names) and `to_json` (for the CLI).
See docs/gb26875.md.
"""
