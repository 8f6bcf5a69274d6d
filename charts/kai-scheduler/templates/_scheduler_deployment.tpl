{{/*
One scheduler Deployment: the release's own (shard "") or a scheduling shard's (templates/shards.yaml).
Takes a dict: ctx (the root context, its Values.scheduler already the shard's), shard (name or ""),
args (extra flags, e.g. --partition-label-value).
*/}}
{{- define "kai.schedulerDeployment" -}}
{{- $r := .ctx -}}
{{- $sfx := "" -}}
{{- if .shard -}}{{- $sfx = printf "-%s" .shard -}}{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "kai.fullname" $r }}{{ $sfx }}
  namespace: {{ $r.Release.Namespace }}
  labels:
    {{- include "kai.labels" $r | nindent 4 }}
    {{- with .shard }}
    kai.scheduler/shard: {{ . }}
    {{- end }}
spec:
  replicas: {{ $r.Values.scheduler.replicaCount }}
  # As KAI's scheduler: never two schedulers of one version side by side without a lease.
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "kai.shardSelectorLabels" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "kai.shardSelectorLabels" . | nindent 8 }}
        {{- with $r.Values.scheduler.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "kai.schedulerConfig" $r | sha256sum }}
        {{- with $r.Values.scheduler.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "kai.serviceAccountName" $r }}
      # On SIGTERM kai lets in-flight bindings finish (--shutdown-grace-period, 20s), then
      # releases the leader Lease and exits 0: 30s leaves it 10s to do so before SIGKILL.
      terminationGracePeriodSeconds: 30
      {{- with $r.Values.global.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $r.Values.scheduler.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- toYaml $r.Values.scheduler.podSecurityContext | nindent 8 }}
      containers:
        - name: scheduler
          image: {{ include "kai.image" $r | quote }}
          imagePullPolicy: {{ $r.Values.image.pullPolicy }}
          args:
            {{- if gt (int $r.Values.scheduler.verbosity) 0 }}
            - "-{{ repeat (int $r.Values.scheduler.verbosity) "v" }}"
            {{- end }}
            - scheduler
            - --config=/etc/kai/config.yaml
            - --scheduler-name={{ $r.Values.scheduler.schedulerName }}
            - --namespace={{ $r.Release.Namespace }}
            - --schedule-period={{ $r.Values.scheduler.schedulePeriod }}
            - --metrics-port={{ $r.Values.scheduler.ports.metricsPort }}
            - --shutdown-grace-period=20s
            - --queue-label-key={{ $r.Values.global.queueLabelKey | default "kai.scheduler/queue" }}
            {{- $pg := $r.Values.podGrouper | default dict }}
            {{- $dcm := $pg.defaultPrioritiesConfigMap | default dict }}
            {{- if $dcm.name }}
            - --default-priorities-configmap-name={{ $dcm.name }}
            - --default-priorities-configmap-namespace={{ $dcm.namespace | default $r.Release.Namespace }}
            {{- end }}
            - --knative-gang-schedule={{ hasKey $pg "knativeGangSchedule" | ternary $pg.knativeGangSchedule true }}
            {{- if include "kai.leaderElect" $r }}
            - --leader-elect
            {{- end }}
            {{- with $r.Values.global.podLabelSelector }}
            - --pod-label-selector={{ include "kai.labelSelector" . }}
            {{- end }}
            {{- with $r.Values.global.namespaceLabelSelector }}
            - --namespace-label-selector={{ include "kai.labelSelector" . }}
            {{- end }}
            {{- $client := $r.Values.scheduler.k8sClientConfig | default dict }}
            - --qps={{ hasKey $client "qps" | ternary $client.qps 50 }}
            - --burst={{ hasKey $client "burst" | ternary $client.burst 300 }}
            - --profiler-port={{ include "kai.profilerPort" $r }}
            {{- range $name, $value := $r.Values.scheduler.args }}
            - {{ printf "--%s=%v" $name $value | quote }}
            {{- end }}
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            {{- range $r.Values.scheduler.additionalArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            {{- with $r.Values.scheduler.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $r.Values.scheduler.ports.metricsPort }}
              protocol: TCP
            {{- if include "kai.profilerEnabled" $r }}
            - name: profiler
              containerPort: {{ include "kai.profilerPort" $r }}
              protocol: TCP
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: metrics
            {{- toYaml $r.Values.scheduler.livenessProbe | nindent 12 }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: metrics
            {{- toYaml $r.Values.scheduler.readinessProbe | nindent 12 }}
          resources:
            {{- toYaml $r.Values.scheduler.resources | nindent 12 }}
          securityContext:
            {{- toYaml $r.Values.scheduler.securityContext | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/kai
              readOnly: true
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: config
          configMap:
            name: {{ include "kai.fullname" $r }}{{ $sfx }}-config
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with (merge (dict) $r.Values.scheduler.nodeSelector $r.Values.global.nodeSelector) }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with (concat $r.Values.scheduler.tolerations $r.Values.global.tolerations) }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with ($r.Values.scheduler.affinity | default $r.Values.global.affinity) }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "kai.shardSelectorLabels" -}}
{{- if .shard -}}
app.kubernetes.io/name: {{ include "kai.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: scheduler-shard
kai.scheduler/shard: {{ .shard }}
{{- else -}}
{{ include "kai.selectorLabels" .ctx }}
{{- end -}}
{{- end -}}

{{/* A label map {k: v, ...} as selector text "k=v,..." (sorted). */}}
{{- define "kai.labelSelector" -}}
{{- $out := list -}}
{{- range $k := (keys . | sortAlpha) -}}{{- $out = append $out (printf "%s=%s" $k (get $ $k)) -}}{{- end -}}
{{- join "," $out -}}
{{- end -}}
