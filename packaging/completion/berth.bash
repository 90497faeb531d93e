# bash completion for berth(1). Installed as
# /usr/share/bash-completion/completions/berth.
#
# The command and flag lists are kept equal to what `berth help` and
# `berth COMMAND -h` print (packaging/buildtest checks it).

# _berth_apps prints the names of the apps whose units `berth init` wrote.
_berth_apps() {
	local f
	for f in /etc/systemd/system/*.service; do
		[[ -r $f ]] && grep -q '^ExecStart=.*berth serve' "$f" 2>/dev/null &&
			basename "$f" .service
	done
}

_berth() {
	local cur prev words cword
	_init_completion || return

	local commands="serve init status restart drain undrain metrics cache logs version help"
	local serve_flags="--name --port --listen --workers --min-workers --max-workers
		--startup-file --spawn-timeout --shutdown-timeout --stop-timeout
		--queue-timeout --max-queue --idle-timeout --app-type --command --port-env
		--node --node-arg --env --spawner --user --group --memory-max --cpu-quota
		--tasks-max --no-sandbox --log-level --log-file
		--trusted-proxy --proxy-protocol --status-listen --agent-listen --metrics
		--access-log --drain-delay --max-blocked --max-request-time --max-requests
		--memory-limit --sticky-sessions --sticky-sessions-cookie-name
		--exit-idle-time --friendly-error-pages --cache --cache-size
		--cache-max-entry --cache-vary-cookie
		--static --static-dir --static-max-age --tls-cert --tls-key --http2 --engine
		--max-connections --max-connections-per-ip --max-body-size
		--max-header-bytes --max-request-line --header-timeout
		--keepalive-timeout --client-timeout --buffering --stream-path --buffer-dir"
	local init_flags="--port --listen --name --user --stdout --force --berth --tls-cert --tls-key"
	local status_flags="--json --memory"
	local restart_flags="--timeout"
	local cache_flags="--host"
	local logs_flags="-f -n --user"

	if ((cword == 1)); then
		mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		return
	fi

	# After `berth init … --`, the words are serve's flags.
	local cmd=${words[1]} i
	if [[ $cmd == init ]]; then
		for ((i = 2; i < cword; i++)); do
			[[ ${words[i]} == -- ]] && cmd=serve
		done
	fi

	case $cmd in
	serve)
		case $prev in
		--app-type)
			mapfile -t COMPREPLY < <(compgen -W "node generic" -- "$cur")
			return
			;;
		--spawner)
			mapfile -t COMPREPLY < <(compgen -W "auto exec systemd" -- "$cur")
			return
			;;
		--log-level)
			mapfile -t COMPREPLY < <(compgen -W "debug info warn error" -- "$cur")
			return
			;;
		--cache)
			mapfile -t COMPREPLY < <(compgen -W "on off" -- "$cur")
			return
			;;
		--startup-file | --log-file)
			_filedir
			return
			;;
		--node)
			_filedir
			return
			;;
		--user)
			mapfile -t COMPREPLY < <(compgen -u -- "$cur")
			return
			;;
		--group)
			mapfile -t COMPREPLY < <(compgen -g -- "$cur")
			return
			;;
		--name | --port | --listen | --workers | --min-workers | --max-workers | \
			--spawn-timeout | --shutdown-timeout | --stop-timeout | --queue-timeout | \
			--max-queue | --idle-timeout | --command | --node-arg | --env | \
			--memory-max | --cpu-quota | --tasks-max | --trusted-proxy | \
			--status-listen | --agent-listen | --drain-delay | --cache-size | \
			--cache-max-entry | --cache-vary-cookie)
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$serve_flags" -- "$cur")
		else
			_filedir -d
		fi
		;;
	init)
		case $prev in
		--name | --port | --listen) return ;;
		--berth)
			_filedir
			return
			;;
		esac
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$init_flags" -- "$cur")
		else
			_filedir -d
		fi
		;;
	status | restart)
		[[ $prev == --timeout ]] && return
		if [[ $cur == -* ]]; then
			local flags=$status_flags
			[[ ${words[1]} == restart ]] && flags=$restart_flags
			mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_berth_apps)" -- "$cur")
		fi
		;;
	drain | undrain | metrics)
		mapfile -t COMPREPLY < <(compgen -W "$(_berth_apps)" -- "$cur")
		;;
	cache)
		[[ $prev == --host ]] && return
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$cache_flags" -- "$cur")
		elif ((cword == 2)); then
			mapfile -t COMPREPLY < <(compgen -W "purge" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_berth_apps)" -- "$cur")
		fi
		;;
	logs)
		[[ $prev == -n ]] && return
		if [[ $cur == -* ]]; then
			mapfile -t COMPREPLY < <(compgen -W "$logs_flags" -- "$cur")
		else
			mapfile -t COMPREPLY < <(compgen -W "$(_berth_apps)" -- "$cur")
		fi
		;;
	esac
} &&
	complete -F _berth berth
