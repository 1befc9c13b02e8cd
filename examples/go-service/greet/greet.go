// Package greet is the service's one dependency: a small module of its
// own, vendored into the build like any module from a proxy.
package greet

import "fmt"

// Hello is the greeting for name; an empty name greets the world.
func Hello(name string) string {
	if name == "" {
		name = "world"
	}
	return fmt.Sprintf("Hello, %s, from a mini image!", name)
}
