package balancer

import (
	"net/http"
	"strconv"
)

// statusText is the standard reason phrase for a status code.
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Status " + strconv.Itoa(code)
}

func appendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }
