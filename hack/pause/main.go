// Command pause is the local node's pod sandbox ("pause") image: it holds a pod's
// namespaces and does nothing until it is told to stop. Development only (the image
// registry that serves Kubernetes' own pause image is out of reach here).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
