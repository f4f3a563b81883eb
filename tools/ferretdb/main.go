// Command flowkit-ferretdb runs FerretDB 1.x (MongoDB wire protocol) with the
// SQLite backend, for flowkit's real-service tests. It wraps FerretDB's
// embeddable package, so it needs none of the files FerretDB's own build
// generates. Built and started by scripts/services.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27217", "TCP address to listen on (host:port)")
	sqliteDir := flag.String("sqlite-dir", "", "directory for the SQLite database files (created if missing; required)")
	logLevel := flag.String("log-level", "warn", "log level: debug, info, warn or error")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-ferretdb: bad -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *sqliteDir == "" {
		fmt.Fprintln(os.Stderr, "flowkit-ferretdb: -sqlite-dir is required")
		os.Exit(2)
	}
	dir, err := filepath.Abs(*sqliteDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-ferretdb: %v\n", err)
		os.Exit(2)
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-ferretdb: %v\n", err)
		os.Exit(1)
	}
	// FerretDB wants a SQLite URI naming a directory, ending with "/". FerretDB already puts SQLite
	// in WAL mode; synchronous=NORMAL then skips the fsync of every commit and stays safe against
	// process crashes (only a power loss can drop the last commits): right for a test server.
	sqliteURL := "file:" + strings.TrimSuffix(dir, "/") + "/?_pragma=synchronous(normal)"

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: sqliteURL,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-ferretdb: %v\n", err)
		os.Exit(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	logger.Warn("flowkit-ferretdb starting", slog.String("listen", *listenAddr), slog.String("sqlite", sqliteURL))
	if err = f.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "flowkit-ferretdb: %v\n", err)
		os.Exit(1)
	}
	logger.Warn("flowkit-ferretdb stopped")
}
