"""What has been processed: queries and statistics, and their renderers."""
