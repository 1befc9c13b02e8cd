// Command site is a small HTTP service: GET /?name=N answers with a
// greeting. It listens on $PORT (default 8080).
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"example.com/greet"
)

func handler(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintln(w, greet.Hello(r.URL.Query().Get("name")))
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", handler)
	log.Printf("listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
