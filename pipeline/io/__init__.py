"""All reading and writing of stores and files: OME-Zarr volumes, SWC skeletons, configs."""
