// Command berth is a systemd-native application server for Node.js apps.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("berth", version)
		return
	}
	fmt.Fprintln(os.Stderr, "berth: not yet")
	os.Exit(2)
}
