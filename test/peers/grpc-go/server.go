package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/examples/helloworld/helloworld"
	"google.golang.org/grpc/examples/route_guide/routeguide"
	"google.golang.org/grpc/status"
)

// Names a SayHello request can carry to choose the handler's outcome; any other name is answered
// "Hello <name>" at once.
const (
	nameNotFound = "not-found"      // status.Error(codes.NotFound): grpc-status 5
	nameInternal = "internal"       // status.Error(codes.Internal): grpc-status 13
	namePlain    = "plain-error"    // a plain Go error: grpc-go sends grpc-status 2 (UNKNOWN)
	nameDeadline = "server-timeout" // status.Error(codes.DeadlineExceeded) from the handler: grpc-status 4 in trailers
	// The handler sleeps slowHandler whatever the deadline: a client with a shorter one gives up
	// and resets the stream long before the handler could answer.
	nameSlow = "slow"
	// "wait-<ms>": answered OK after that many milliseconds (concurrent calls overlap).
	prefixWait = "wait-"
)

const slowHandler = 2 * time.Second

type greeter struct {
	helloworld.UnimplementedGreeterServer
}

func (greeter) SayHello(ctx context.Context, request *helloworld.HelloRequest) (*helloworld.HelloReply, error) {
	name := request.GetName()
	switch {
	case name == nameNotFound:
		return nil, status.Error(codes.NotFound, "no greeting for not-found")
	case name == nameInternal:
		return nil, status.Error(codes.Internal, "the greeter failed")
	case name == namePlain:
		return nil, errors.New("a plain Go error")
	case name == nameDeadline:
		return nil, status.Error(codes.DeadlineExceeded, "the greeter ran out of time")
	case name == nameSlow:
		time.Sleep(slowHandler)
	case strings.HasPrefix(name, prefixWait):
		ms, err := strconv.Atoi(strings.TrimPrefix(name, prefixWait))
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "%q: want wait-<milliseconds>", name)
		}
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	return &helloworld.HelloReply{Message: "Hello " + name}, nil
}

type routeGuide struct {
	routeguide.UnimplementedRouteGuideServer
}

func (routeGuide) GetFeature(_ context.Context, point *routeguide.Point) (*routeguide.Feature, error) {
	return &routeguide.Feature{Name: fmt.Sprintf("feature at %d,%d", point.GetLatitude(), point.GetLongitude()), Location: point}, nil
}

// ListFeatures sends Lo.Latitude features, each Lo.Longitude milliseconds after the previous one
// (the first after one interval too): a stream of known count and duration.
func (routeGuide) ListFeatures(rectangle *routeguide.Rectangle, stream grpc.ServerStreamingServer[routeguide.Feature]) error {
	count := int(rectangle.GetLo().GetLatitude())
	interval := time.Duration(rectangle.GetLo().GetLongitude()) * time.Millisecond
	for i := range count {
		time.Sleep(interval)
		if err := stream.Send(&routeguide.Feature{Name: fmt.Sprintf("feature %d", i), Location: &routeguide.Point{Latitude: int32(i)}}); err != nil {
			return err
		}
	}
	return nil
}

// RecordRoute counts the points until the client half-closes.
func (routeGuide) RecordRoute(stream grpc.ClientStreamingServer[routeguide.Point, routeguide.RouteSummary]) error {
	start := time.Now()
	var points int32
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&routeguide.RouteSummary{PointCount: points, ElapsedTime: int32(time.Since(start).Seconds())})
		}
		if err != nil {
			return err
		}
		points++
	}
}

// RouteChat echoes every note at once, until the client half-closes.
func (routeGuide) RouteChat(stream grpc.BidiStreamingServer[routeguide.RouteNote, routeguide.RouteNote]) error {
	for {
		note, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(note); err != nil {
			return err
		}
	}
}

func serve(address, tlsFiles string) error {
	options := []grpc.ServerOption{grpc.MaxConcurrentStreams(1000)}
	if tlsFiles != "" {
		cert, key, ok := strings.Cut(tlsFiles, ",")
		if !ok {
			return fmt.Errorf("-tls %q: want cert.pem,key.pem", tlsFiles)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("loading the TLS certificate and key: %w", err)
		}
		options = append(options, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})))
	}
	listener, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", address, err)
	}
	server := grpc.NewServer(options...)
	helloworld.RegisterGreeterServer(server, greeter{})
	routeguide.RegisterRouteGuideServer(server, routeGuide{})
	// the listener accepts (into its backlog) from here on: the address is the readiness signal
	fmt.Fprintln(os.Stdout, listener.Addr().String())
	return server.Serve(listener)
}
