/**
 * The shape of a firewatch dashboard file, built from @grafana/schema's own types.
 *
 * tests/test_dashboards.py writes one `generated/<name>.ts` per dashboard that assigns the
 * dashboard's JSON, as an object literal, to `FirewatchDashboard`, and runs `tsc` over them. An
 * object literal (unlike an imported .json module) gets TypeScript's excess-property check, so a
 * misspelt field is an error, and its string and number literals keep their literal types, so an
 * enum field holding a value outside the enum is an error too.
 *
 * What is refined here, and why:
 * - `AsJson`: a TypeScript string enum (ThresholdsMode, FieldColorModeId, ...) as JSON holds it:
 *   its values ("absolute"), not its members. Numeric enums (graphTooltip, refresh, sort, hide) are
 *   kept as they are: a number literal is assignable to a numeric enum only if it is a member.
 * - Panels: @grafana/schema types `options` and `fieldConfig.defaults.custom` as open records; here
 *   each panel type's own generated Options and FieldConfig (from the package's panelcfg types) are
 *   used, deep-partial because Grafana fills what a dashboard leaves out with the plugin's defaults.
 * - Queries: @grafana/schema types a panel's targets as open records and has no InfluxDB or SQL
 *   query types; the two below follow Grafana's InfluxQuery
 *   (public/app/plugins/datasource/influxdb/types.ts) and SQLQuery (packages/grafana-sql) in the
 *   raw (code) mode firewatch uses, pinned to the two provisioned data sources.
 * Add a panel type by adding its panelcfg types to `PanelTypes`.
 *
 * @grafana/schema is pinned (package.json) to the Grafana image of docker-compose.yml: raise both
 * together. In 12.0 the panelcfg types are reached through the package's `./dist/*` export, hence
 * the `.js` in their paths.
 */
import type {
  AnnotationQuery,
  Dashboard,
  DataQuery,
  FieldConfigSource,
  Panel,
  RowPanel,
  VariableModel,
} from '@grafana/schema';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen.js';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen.js';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen.js';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.js';

/** A type as its JSON holds it: string enums by value; everything else as it is. */
export type AsJson<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<AsJson<U>>
      : T extends object
        ? { [K in keyof T]: AsJson<T[K]> }
        : T;

/** AsJson, with every property optional at every depth (panel options Grafana defaults). */
export type Defaults<T> = T extends string
  ? `${T}`
  : T extends number | boolean | null | undefined
    ? T
    : T extends ReadonlyArray<infer U>
      ? Array<Defaults<U>>
      : T extends object
        ? { [K in keyof T]?: Defaults<T[K]> }
        : T;

/** The two data sources grafana/provisioning/datasources/firewatch.yaml provisions. */
export interface InfluxRef {
  type: 'influxdb';
  uid: 'firewatch-influxdb';
}
export interface PostgresRef {
  type: 'grafana-postgresql-datasource';
  uid: 'firewatch-postgres';
}
interface GrafanaRef {
  type: 'grafana';
  uid: '-- Grafana --';
}

type QueryBase = Omit<AsJson<DataQuery>, 'datasource'>;

/** A raw InfluxQL query. */
export interface InfluxQLQuery extends QueryBase {
  datasource: InfluxRef;
  rawQuery: true;
  query: string;
  resultFormat: 'time_series' | 'table' | 'logs';
  alias?: string;
}

/** A raw InfluxQL annotation query: which result columns hold the text, title, tags, end time. */
export interface InfluxQLAnnotation extends QueryBase {
  rawQuery: true;
  query: string;
  fromAnnotations: true;
  textColumn?: string;
  titleColumn?: string;
  tagsColumn?: string;
  timeEndColumn?: string;
}

/** A PostgreSQL query written in code mode. */
export interface SqlQuery extends QueryBase {
  datasource: PostgresRef;
  editorMode: 'code';
  rawQuery: true;
  rawSql: string;
  format: 'table' | 'time_series';
}

/** Each panel type firewatch uses, with the options and custom field config of its plugin. */
interface PanelTypes {
  bargauge: { options: bargauge.Options; custom: Record<string, never> };
  stat: { options: stat.Options; custom: Record<string, never> };
  table: { options: table.Options; custom: table.FieldConfig };
  timeseries: { options: timeseries.Options; custom: timeseries.FieldConfig };
}

type FieldDefaults<Custom> = Omit<AsJson<FieldConfigSource['defaults']>, 'custom'> & {
  custom?: Defaults<Custom>;
};

type PanelOf<K extends keyof PanelTypes> = Omit<
  AsJson<Panel>,
  'type' | 'datasource' | 'targets' | 'options' | 'fieldConfig'
> & {
  id: number;
  type: K;
  title: string;
  description: string;
  gridPos: AsJson<NonNullable<Panel['gridPos']>>;
  datasource: InfluxRef | PostgresRef;
  targets: Array<InfluxQLQuery | SqlQuery>;
  options: Defaults<PanelTypes[K]['options']>;
  fieldConfig: {
    defaults: FieldDefaults<PanelTypes[K]['custom']>;
    overrides: AsJson<FieldConfigSource['overrides']>;
  };
};

/** A panel: a union discriminated by `type`, so each type's options are checked as its own. */
export type FirewatchPanel = { [K in keyof PanelTypes]: PanelOf<K> }[keyof PanelTypes];

type Row = Omit<AsJson<RowPanel>, 'panels'> & { panels: FirewatchPanel[] };

type AnnotationBase = Omit<AsJson<AnnotationQuery>, 'datasource' | 'target'>;

/** Grafana's built-in annotations, or an InfluxQL or SQL annotation query. */
export type FirewatchAnnotation =
  | (AnnotationBase & { builtIn: 1; type: 'dashboard'; datasource: GrafanaRef })
  | (AnnotationBase & { datasource: InfluxRef; target: InfluxQLAnnotation })
  | (AnnotationBase & { datasource: PostgresRef; target: SqlQuery });

/** A query variable of one of the two data sources. */
export type FirewatchVariable = Omit<AsJson<VariableModel>, 'type' | 'datasource' | 'query'> & {
  type: 'query';
  datasource: InfluxRef | PostgresRef;
  query: string;
  label: string;
  description: string;
};

export type FirewatchDashboard = Omit<AsJson<Dashboard>, 'panels' | 'annotations' | 'templating'> & {
  uid: 'firewatch-overview' | 'firewatch-device' | 'firewatch-tickets' | 'firewatch-pipeline';
  title: string;
  description: string;
  refresh: string;
  panels: Array<FirewatchPanel | Row>;
  annotations: { list: FirewatchAnnotation[] };
  templating: { list: FirewatchVariable[] };
};
