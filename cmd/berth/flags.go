package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// command is one subcommand's flag set with its help text. Every
// subcommand parses through it, so that all of them behave alike: flags
// before or after the arguments, a mistyped flag answered in one line with
// the closest flag, and `-h` printing a synopsis, a sentence and the flags.
type command struct {
	name     string // "serve"
	synopsis string // "berth serve [flags] [APP_DIR]"
	about    string // what the command does, a sentence or a short paragraph
	*flag.FlagSet
}

// newCommand returns the flag set of `berth name`.
func newCommand(name, synopsis, about string) *command {
	fs := flag.NewFlagSet("berth "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are reported by parse, in one line
	fs.Usage = func() {}
	return &command{name: name, synopsis: synopsis, about: about, FlagSet: fs}
}

// usageError is a bad command line, explained in one line; the caller
// prints it after "berth NAME: " and exits 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// parse parses args, flags before or after the positional arguments (a
// "--" ends the flags), and returns the positional arguments. On -h it
// writes the help to helpOut and returns flag.ErrHelp (exit 0); a bad flag
// gives a *usageError naming the closest flag (exit 2).
func (c *command) parse(args []string, helpOut io.Writer) ([]string, error) {
	pos, err := parseInterspersed(c.FlagSet, args)
	switch {
	case err == nil:
		return pos, nil
	case errors.Is(err, flag.ErrHelp):
		c.help(helpOut)
		return nil, flag.ErrHelp
	default:
		return nil, &usageError{c.explain(err)}
	}
}

// usageExit reports err of a subcommand on stderr and returns the exit
// code: 0 after -h, 2 for a usage error, else 1.
func usageExit(name string, err error, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "berth %s: %v\n", name, err)
	var u *usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// help writes the synopsis, the description and the flags.
func (c *command) help(w io.Writer) {
	fmt.Fprintf(w, "usage: %s\n\n%s\n", c.synopsis, strings.TrimSpace(c.about))
	n := 0
	c.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		c.SetOutput(w)
		c.PrintDefaults()
		c.SetOutput(io.Discard)
	}
}

// explain turns a flag package error into one line that says what to do.
func (c *command) explain(err error) string {
	msg := err.Error()
	hint := fmt.Sprintf("'berth %s -h' lists the flags", c.name)
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimLeft(name, "-")
		if near := c.closest(name); near != "" {
			return fmt.Sprintf("unknown flag %s (did you mean %s?); %s", dashed(name), dashed(near), hint)
		}
		return fmt.Sprintf("unknown flag %s; %s", dashed(name), hint)
	}
	// "invalid value … for flag -port", "flag needs an argument: -port":
	// the flag package writes -name; berth's docs write --name.
	return singleDashFlag.ReplaceAllString(msg, "$1--$2") + "; " + hint
}

var singleDashFlag = regexp.MustCompile(`(^|[ :])-([a-z][a-z0-9-]+)`)

// closest is the defined flag nearest to name (edit distance at most a
// third of its length, at least 2), or "" if none is near.
func (c *command) closest(name string) string {
	best, bestD := "", 0
	c.VisitAll(func(f *flag.Flag) {
		d := editDistance(name, f.Name)
		if strings.HasPrefix(f.Name, name) && len(name) >= 3 {
			d = min(d, 1)
		}
		if best == "" || d < bestD {
			best, bestD = f.Name, d
		}
	})
	if best == "" || bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// dashed is how a flag is written: -f for a one-letter flag, --name else.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// editDistance is the Levenshtein distance between a and b, counting a
// swap of two neighbours as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`berth serve app --port 80`), which the flag
// package alone stops at. A "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
