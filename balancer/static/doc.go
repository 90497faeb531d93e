// Package static is the handler-chain link that serves an app's static
// files (Passenger's convention: the app's public/ directory) without
// touching a worker.
//
// A GET or HEAD request whose path names a regular file under the
// directory is answered from the file: Content-Type by extension,
// ETag and Last-Modified with 304 answers to If-None-Match and
// If-Modified-Since, single byte ranges (206, 416, If-Range), and a
// precompressed sibling (NAME.br, NAME.gz) when the client accepts its
// encoding, with Vary: Accept-Encoding. Names that carry a content hash
// (app-3f9a1c2b.js) get a long Cache-Control when Config.MaxAge says so.
// A path ending in / serves that directory's index.html.
//
// Anything else goes to the next link (the app), as Passenger does: other
// methods, missing files, directories, and every path this link refuses
// to look up: a segment that starts with a dot (dotfiles, "..", "."; the
// one exception is /.well-known/), a NUL byte, an empty segment, or a
// malformed percent-escape. Files are opened through an os.Root, so
// neither ".." nor a symbolic link can reach outside the directory.
// There are no directory listings.
//
// Bodies are copied with io.Copy to the ResponseWriter, which the front
// door turns into sendfile(2) for a plain TCP client.
package static
