{{/* Names */}}
{{- define "kai.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kai.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kai.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kai.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kai.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kai.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: scheduler
{{- end -}}

{{- define "kai.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kai.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kai-scheduler
{{- end -}}

{{- define "kai.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.global.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.global.registry) $repo -}}{{- end -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Leader election: on with more than one replica, or when forced. */}}
{{- define "kai.leaderElect" -}}
{{- if or (gt (int .Values.scheduler.replicaCount) 1) .Values.global.leaderElection -}}true{{- end -}}
{{- end -}}

{{/* Placement strategy as {gpu, cpu}. */}}
{{- define "kai.placement" -}}
{{- $ps := .Values.scheduler.placementStrategy | default "binpack" -}}
{{- if kindIs "map" $ps -}}
gpu: {{ $ps.gpu | default "binpack" }}
cpu: {{ $ps.cpu | default "binpack" }}
{{- else -}}
gpu: {{ $ps }}
cpu: {{ $ps }}
{{- end -}}
{{- end -}}

{{/*
The scheduler config (KAI's SchedulerConfiguration YAML), built the way KAI's operator
builds it from a SchedulingShard: default plugins and actions with priorities (higher runs
first), the placement strategy choosing nodeplacement arguments, gpupack or gpuspread, and
whether consolidation and gpusharingorder are on; then the user's overrides merged per name
(enabled and priority individually, arguments replaced whole); then sorted by priority
descending, name ascending, disabled ones dropped.
*/}}
{{- define "kai.schedulerConfig" -}}
{{- $placement := include "kai.placement" . | fromYaml -}}
{{- $plugins := dict -}}
{{- $base := list "predicates" 1900 "proportion" 1800 "priority" 1700 "nodeavailability" 1600 "resourcetype" 1500 "podaffinity" 1400 "elastic" 1300 "kubeflow" 1200 "ray" 1100 "subgrouporder" 1000 "taskorder" 900 "nominatednode" 800 "dynamicresources" 700 "minruntime" 600 "topology" 500 "snapshot" 400 -}}
{{- range $i, $v := $base -}}
{{- if eq (mod $i 2) 0 -}}
{{- $_ := set $plugins $v (dict "enabled" true "priority" (index $base (add1 $i)) "arguments" dict) -}}
{{- end -}}
{{- end -}}
{{- if eq $placement.gpu "spread" -}}
{{- $_ := set $plugins "gpuspread" (dict "enabled" true "priority" 300 "arguments" dict) -}}
{{- else -}}
{{- $_ := set $plugins "gpupack" (dict "enabled" true "priority" 300 "arguments" dict) -}}
{{- $_ := set $plugins "gpusharingorder" (dict "enabled" true "priority" 100 "arguments" dict) -}}
{{- end -}}
{{- $_ := set $plugins "nodeplacement" (dict "enabled" true "priority" 200 "arguments" (dict "gpu" $placement.gpu "cpu" $placement.cpu)) -}}
{{- $actions := dict "allocate" (dict "enabled" true "priority" 500) "reclaim" (dict "enabled" true "priority" 300) "preempt" (dict "enabled" true "priority" 200) "stalegangeviction" (dict "enabled" true "priority" 100) -}}
{{- if and (ne $placement.gpu "spread") (ne $placement.cpu "spread") -}}
{{- $_ := set $actions "consolidation" (dict "enabled" true "priority" 400) -}}
{{- end -}}
{{- range $name, $ov := (.Values.scheduler.plugins | default dict) -}}
{{- $p := get $plugins $name | default (dict "enabled" true "priority" 0 "arguments" dict) -}}
{{- $ov = $ov | default dict -}}
{{- if hasKey $ov "enabled" -}}{{- $_ := set $p "enabled" $ov.enabled -}}{{- end -}}
{{- if hasKey $ov "priority" -}}{{- $_ := set $p "priority" $ov.priority -}}{{- end -}}
{{- if hasKey $ov "arguments" -}}{{- $_ := set $p "arguments" ($ov.arguments | default dict) -}}{{- end -}}
{{- $_ := set $plugins $name $p -}}
{{- end -}}
{{- if not (kindIs "invalid" .Values.scheduler.kValue) -}}
{{- $pp := get $plugins "proportion" -}}
{{- $_ := set $pp "arguments" (merge (deepCopy ($pp.arguments | default dict)) (dict "kValue" (toString .Values.scheduler.kValue))) -}}
{{- end -}}
{{- range $name, $ov := (.Values.scheduler.actions | default dict) -}}
{{- $a := get $actions $name | default (dict "enabled" true "priority" 0) -}}
{{- $ov = $ov | default dict -}}
{{- if hasKey $ov "enabled" -}}{{- $_ := set $a "enabled" $ov.enabled -}}{{- end -}}
{{- if hasKey $ov "priority" -}}{{- $_ := set $a "priority" $ov.priority -}}{{- end -}}
{{- $_ := set $actions $name $a -}}
{{- end -}}
{{- $akeys := list -}}
{{- range $name, $a := $actions -}}
{{- if $a.enabled -}}{{- $akeys = append $akeys (printf "%010d/%s" (sub 1000000000 (int $a.priority)) $name) -}}{{- end -}}
{{- end -}}
{{- $anames := list -}}
{{- range (sortAlpha $akeys) -}}{{- $anames = append $anames (splitList "/" . | last) -}}{{- end -}}
{{- $pkeys := list -}}
{{- range $name, $p := $plugins -}}
{{- if $p.enabled -}}{{- $pkeys = append $pkeys (printf "%010d/%s" (sub 1000000000 (int $p.priority)) $name) -}}{{- end -}}
{{- end }}
actions: {{ join ", " $anames | quote }}
tiers:
- plugins:
{{- range (sortAlpha $pkeys) }}
{{- $name := splitList "/" . | last }}
{{- $p := get $plugins $name }}
  - name: {{ $name }}
{{- if $p.arguments }}
    arguments:
{{- range $k := (keys $p.arguments | sortAlpha) }}
      {{ $k }}: {{ get $p.arguments $k | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- $qd := .Values.scheduler.queueDepthPerAction | default dict }}
{{- if $qd }}
queueDepthPerAction:
{{- range $k := (keys $qd | sortAlpha) }}
  {{ $k }}: {{ get $qd $k | int }}
{{- end }}
{{- end }}
{{- with .Values.scheduler.usageDBConfig }}
usageDBConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The profiler: on when scheduler.args sets enable-profiler to true (a bool or a Go bool string);
its port is scheduler.ports.profilerPort (KAI's 8182).
*/}}
{{- define "kai.profilerEnabled" -}}
{{- $v := index (.Values.scheduler.args | default dict) "enable-profiler" | toString | lower -}}
{{- if has $v (list "true" "1" "t") -}}true{{- end -}}
{{- end -}}

{{- define "kai.profilerPort" -}}
{{- (.Values.scheduler.ports | default dict).profilerPort | default 8182 -}}
{{- end -}}
