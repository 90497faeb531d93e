// Package logging builds berth's slog handler. Only cmd/berth uses it;
// every other package takes an injected *slog.Logger.
//
// Normally the handler writes slog's text format to stderr. When berth runs
// as a systemd service whose stderr goes to journald (JOURNAL_STREAM names
// stderr's device and inode), it sends each record through journald's
// native protocol instead, so that fields stay fields:
//
//	MESSAGE            the message, then the attributes as key=value
//	PRIORITY           from the level: debug 7, info 6, warn 4, error 3
//	SYSLOG_IDENTIFIER  berth
//	APP, WORKER, UNIT, PID, ERR, …
//	                   every attribute, its key upper-cased with '.' and
//	                   other characters turned into '_' (FieldName)
//	OBJECT_SYSTEMD_UNIT  the "unit" attribute again: `journalctl -u UNIT`
//	                   shows berth's lines about that worker unit too
//	OBJECT_PID         the "pid" attribute again, when it is a number
//
// so that, for app myapp:
//
//	journalctl -u myapp.service               berth's own story
//	journalctl -u 'berth-myapp-*'             the workers' output, and berth's lines about them
//	journalctl -t berth WORKER=w2 -o verbose  every field of berth's lines about worker w2
//
// If the journal socket cannot be reached, records go to stderr as text,
// with one line saying so, until it answers again.
package logging
