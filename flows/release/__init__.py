"""flows/release"""
