// Command kubectl-keyferry is the kubectl plugin for keyferry (kubectl keyferry ...).
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/keyferry/keyferry/internal/plugin"
)

func main() {
	os.Exit(plugin.Main(&plugin.Options{Streams: genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}}, os.Args[1:]))
}
