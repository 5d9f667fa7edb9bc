"""How a site reaches its server: gRPC straight over TCP (the default), or the same gRPC bytes inside a WebSocket
on HTTPS (`wss`, for sites behind an HTTP proxy). `channel.site_channel` is the one call a site makes."""
