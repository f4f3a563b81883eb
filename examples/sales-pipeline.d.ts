import type { RoleHandler } from 'flowkit';
export interface Row {
    order_id: number;
    region: string;
    product: string;
    qty: number;
    unit_price: number;
}
export declare function parseCsv(text: string): Row[];
/** Reads the CSV named by input_inline.path and emits it in batches of input_inline.batch_size rows. */
export declare const csvReader: RoleHandler;
/** Adds revenue to each row of a rechunked batch. */
export declare const enricher: RoleHandler;
/** Totals revenue per region over every enriched batch it pulls. */
export declare function reporter(): RoleHandler;
export declare function salesGraph(csvPath: string): Record<string, unknown>;
