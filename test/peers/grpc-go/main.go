// A gRPC peer for Periscope's end-to-end tests and benchmark: grpc-go's own example services
// (helloworld.Greeter, routeguide.RouteGuide) served and called by grpc-go, so that the spans
// Periscope makes from the HTTP/2 bytes can be compared with what this client actually did.
//
//	grpc-peer -mode server -listen 127.0.0.1:0 [-tls cert.pem,key.pem]
//	grpc-peer -mode client -target 127.0.0.1:PORT [-ca cert.pem] -scenario unary|streams|concurrent
//	grpc-peer -mode load -target 127.0.0.1:PORT [-ca cert.pem] -connections 2 -concurrency 32 -duration 5s
//
// The server prints its bound address on stdout once it accepts connections. The client runs its
// scenario on ONE connection (it fails if it had to dial twice) and prints one JSON line per RPC.
// The load client prints one JSON line: calls, calls per second, latency percentiles.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	mode := flag.String("mode", "", "server, client or load")
	listen := flag.String("listen", "127.0.0.1:0", "server: the address to listen on")
	tlsFiles := flag.String("tls", "", "server: cert.pem,key.pem to serve TLS; plaintext HTTP/2 (h2c) without")
	target := flag.String("target", "", "client, load: host:port of the server")
	ca := flag.String("ca", "", "client, load: the server's certificate (PEM) to trust, for TLS; plaintext without")
	scenario := flag.String("scenario", "", "client: "+scenarioNames())
	connections := flag.Int("connections", 1, "load: connections")
	concurrency := flag.Int("concurrency", 16, "load: goroutines calling SayHello in a loop, spread over the connections")
	duration := flag.Duration("duration", 5*time.Second, "load: how long to call")
	flag.Parse()

	var err error
	switch *mode {
	case "server":
		err = serve(*listen, *tlsFiles)
	case "client":
		err = runScenario(*target, *ca, *scenario)
	case "load":
		err = runLoad(*target, *ca, *connections, *concurrency, *duration)
	default:
		err = fmt.Errorf("-mode must be server, client or load, not %q", *mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc-peer: %v\n", err)
		os.Exit(1)
	}
}
