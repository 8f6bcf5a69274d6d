// Command etcd is the etcd server, at the version selected by the k8s.io/kubernetes module graph.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
