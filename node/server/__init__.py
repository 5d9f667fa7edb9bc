"""The server daemon: gRPC services, scheduler, and one child process per running job."""
